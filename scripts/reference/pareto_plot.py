#!/usr/bin/env python3
"""Perplexity against measured speed, with the Pareto front (lower perplexity, higher speed), as a standalone SVG.
No dependencies. Input: a JSON list of {"label": str, "speed": tokens/s, "ppl": float, "group": str, "dy": label offset (optional)}.
    python3 scripts/reference/pareto_plot.py points.json --x "llama.cpp Q4_K_M decode, tokens/s" --out graphs/pareto.svg
"""
import argparse, json, math
from xml.sax.saxutils import escape

ap = argparse.ArgumentParser()
ap.add_argument("points")
ap.add_argument("--out", required=True)
ap.add_argument("--x", default="tokens/s")
ap.add_argument("--y", default="WikiText-2 perplexity (log scale)")
ap.add_argument("--title", default="")
a = ap.parse_args()
pts = json.load(open(a.points))
W, H, L, R, T, B = 720, 440, 80, 200, 40, 60
xs = [p["speed"] for p in pts]; ys = [math.log(p["ppl"]) for p in pts]
x0, x1 = min(xs) * 0.95, max(xs) * 1.05
y0, y1 = min(ys) - 0.1, max(ys) + 0.1
X = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
Y = lambda v: T + (y1 - math.log(v)) / (y1 - y0) * (H - T - B)
front = sorted([p for p in pts if not any(q["speed"] >= p["speed"] and q["ppl"] <= p["ppl"] and q is not p
                                        and (q["speed"] > p["speed"] or q["ppl"] < p["ppl"]) for q in pts)],
               key=lambda p: p["speed"])
colors = {}
palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="22" font-size="14">{escape(a.title)}</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>']
for i in range(6):
    v = x0 + (x1 - x0) * i / 5
    out.append(f'<text x="{X(v):.1f}" y="{H-B+16}" text-anchor="middle">{v:.0f}</text>')
    lv = math.exp(y0 + (y1 - y0) * i / 5)
    out.append(f'<text x="{L-6}" y="{Y(lv)+4:.1f}" text-anchor="end">{lv:.0f}</text>')
out.append(f'<text x="{(L+W-R)/2}" y="{H-18}" text-anchor="middle">{escape(a.x)}</text>')
out.append(f'<text x="18" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 18 {(T+H-B)/2})">{escape(a.y)}</text>')
if len(front) > 1:
    path = " ".join(f"{X(p['speed']):.1f},{Y(p['ppl']):.1f}" for p in front)
    out.append(f'<polyline points="{path}" fill="none" stroke="#888" stroke-dasharray="4 3"/>')
for p in pts:
    c = colors.setdefault(p.get("group", ""), palette[len(colors) % len(palette)])
    on = p in front
    stroke = ' stroke="black" stroke-width="2"' if on else ""
    out.append(f'<circle cx="{X(p["speed"]):.1f}" cy="{Y(p["ppl"]):.1f}" r="{6 if on else 4}" fill="{c}"{stroke}/>')
    dy = p.get("dy", -6)  # label offset, to keep close points readable
    out.append(f'<text x="{X(p["speed"])+8:.1f}" y="{Y(p["ppl"])+dy:.1f}">{escape(p["label"])} ({p["ppl"]:.1f})</text>')
out.append(f'<text x="{W-R+10}" y="{T+10}">outlined: Pareto front</text>')
out.append("</svg>")
open(a.out, "w").write("\n".join(out) + "\n")
print("wrote", a.out, "front:", [p["label"] for p in front])
