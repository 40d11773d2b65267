import Foundation

/// A small self-contained SVG line chart (no scripts, no network), for loss curves and sweeps.
public struct SVGLinePlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        /// SVG `stroke-dasharray` (e.g. "6 3"); nil for a solid line.
        public var dash: String?
        public init(name: String, points: [(x: Double, y: Double)], color: String, dash: String? = nil) {
            self.name = name
            self.points = points
            self.color = color
            self.dash = dash
        }
    }

    /// Distinct colour and dash pairs for `count` series: ten colours, then the same colours dashed, then dotted.
    public static func styles(_ count: Int) -> [(color: String, dash: String?)] {
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        let dashes: [String?] = [nil, "6 3", "2 2", "8 3 2 3"]
        return (0..<count).map { (colors[$0 % colors.count], dashes[($0 / colors.count) % dashes.count]) }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var logY = false
    /// Values above this are drawn at it (the axis stops there and says so); nil: the largest value.
    public var yCap: Double?
    public var width = 640.0, height = 360.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], logY: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.logY = logY
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }

    /// Tick positions at multiples of 1, 2 or 5 × 10^k inside [lo, hi], about four to seven of them.
    static func roundTicks(_ lo: Double, _ hi: Double) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / 6
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var ticks: [Double] = []
        var k = ceil(lo / step - 1e-9)
        while k * step <= hi + step * 1e-9 {
            ticks.append(k * step)
            k += 1
        }
        return ticks
    }

    public func render() -> String {
        let left = 80.0, top = 32.0, bottom = 44.0
        let cap = yCap
        let series = self.series.map { ser -> Series in
            var c = ser
            if let cap { c.points = ser.points.map { ($0.x, $0.y.isFinite ? min($0.y, cap) : cap) } }
            return c
        }
        // The points a series draws: finite, and positive on a log axis.
        func plotted(_ ser: Series) -> [(x: Double, y: Double)] { ser.points.filter { $0.y.isFinite && (!logY || $0.y > 0) } }
        let all = series.flatMap(plotted)
        let tf: (Double) -> Double = logY ? { log10($0) } : { $0 }
        let xs = all.map(\.x), ys = all.map { tf($0.y) }
        var (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1), (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        if x1 == x0 { x1 = x0 + 1 }
        if y1 == y0 { y1 = y0 + 1; y0 -= 1 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad
        y1 += pad
        // Where a value falls across the plot area: 0 at its left (top) edge, 1 at its right (bottom) edge.
        func fx(_ x: Double) -> Double { (x - x0) / (x1 - x0) }
        func fy(_ y: Double) -> Double { 1 - (tf(y) - y0) / (y1 - y0) }
        // Up to eight series the legend sits inside the plot's top-right corner, unless a line passes there (capped
        // values run along the top edge); more series, or a crowded corner: a column to the right of the plot, the
        // chart growing to hold it.
        let insideW = self.width - left - 16, insideH = self.height - top - bottom
        let boxW = 154.0, boxH = 14 * Double(series.count) + 8
        let crowded = series.contains { ser in
            let pts = plotted(ser).map { (fx($0.x) * insideW, fy($0.y) * insideH) }
            let samples =
                pts.count < 2
                ? pts
                : zip(pts, pts.dropFirst()).flatMap { a, b in
                    (0...8).map { t in (a.0 + (b.0 - a.0) * Double(t) / 8, a.1 + (b.1 - a.1) * Double(t) / 8) }
                }
            return samples.contains { $0.0 >= insideW - boxW && $0.1 <= boxH }
        }
        let outside = series.count > 8 || crowded
        let legendWidth = outside ? 16 + 7.0 * Double(series.map(\.name.count).max() ?? 0) + 24 : 0
        let width = self.width + legendWidth
        let height = max(self.height, outside ? 32 + 14 * Double(series.count) + 20 : 0)
        let right = 16.0 + legendWidth
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + fx(x) * pw }
        func py(_ y: Double) -> Double { top + fy(y) * ph }
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) "
            + "\(Int(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">\(Self.escape(title))</text>\n"
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
        // Y: powers of ten on a log axis that spans two or more of them, else five evenly spaced lines; X: round
        // numbers (steps, levels).
        var yTicks = (0...4).map { y0 + (y1 - y0) * Double($0) / 4 }
        if logY, floor(y1) - ceil(y0) >= 1 {
            let stride = max(1.0, ceil((floor(y1) - ceil(y0)) / 6))
            yTicks = Array(Swift.stride(from: ceil(y0), through: floor(y1), by: stride))
        }
        for fy in yTicks {
            let yy = top + (1 - (fy - y0) / (y1 - y0)) * ph
            let label = logY ? String(format: "%g", pow(10, fy)) : String(format: "%.3g", fy)
            s += "<line x1=\"\(left)\" y1=\"\(yy)\" x2=\"\(left + pw)\" y2=\"\(yy)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(label)</text>\n"
        }
        for fx in Self.roundTicks(x0, x1) {
            let xx = px(fx)
            s += "<line x1=\"\(xx)\" y1=\"\(top + ph)\" x2=\"\(xx)\" y2=\"\(top + ph + 4)\" stroke=\"#999\"/>"
            s += "<text x=\"\(xx)\" y=\"\(top + ph + 16)\" text-anchor=\"middle\">\(String(format: "%.4g", fx))</text>\n"
        }
        s += "<text x=\"\(left + pw / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s +=
            "<text x=\"14\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 "
            + "\(top + ph / 2))\">\(Self.escape(yLabel))</text>\n"
        if let cap, self.series.contains(where: { $0.points.contains { !$0.y.isFinite || $0.y > cap } }) {
            s +=
                "<text x=\"\(left + 4)\" y=\"\(top - 4)\" font-size=\"9\" fill=\"#666\">values above \(String(format: "%.3g", cap)) are "
                + "drawn at the top edge</text>\n"
        }
        for (k, ser) in series.enumerated() {
            let pts = plotted(ser)
            let dash = ser.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            if pts.count > 1 {
                let path = pts.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(ser.color)\" stroke-width=\"1.5\"\(dash) points=\"\(path)\"/>\n"
            } else if let p = pts.first {
                s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3\" fill=\"\(ser.color)\"/>\n"
            }
            let ly = top + 14 + Double(k) * 14
            let lx = outside ? left + pw + 12 : left + pw - 150
            s +=
                "<line x1=\"\(lx)\" y1=\"\(ly - 3)\" x2=\"\(lx + 16)\" y2=\"\(ly - 3)\" stroke=\"\(ser.color)\" stroke-width=\"2\"\(dash)/>"
            s += "<text x=\"\(lx + 20)\" y=\"\(ly + 1)\">\(Self.escape(ser.name))</text>\n"
        }
        return s + "</svg>\n"
    }
}
