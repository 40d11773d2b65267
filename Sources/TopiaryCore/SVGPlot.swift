import Foundation

/// A small self-contained SVG line chart (no scripts, no network), for loss curves and sweeps.
public struct SVGLinePlot {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public init(name: String, points: [(x: Double, y: Double)], color: String) {
            self.name = name
            self.points = points
            self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var logY = false
    public var width = 640.0, height = 360.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], logY: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.logY = logY
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
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
        let left = 64.0, right = 16.0, top = 32.0, bottom = 44.0
        let all = series.flatMap(\.points).filter { $0.y.isFinite && (!logY || $0.y > 0) }
        let tf: (Double) -> Double = logY ? { log10($0) } : { $0 }
        let xs = all.map(\.x), ys = all.map { tf($0.y) }
        var (x0, x1) = (xs.min() ?? 0, xs.max() ?? 1), (y0, y1) = (ys.min() ?? 0, ys.max() ?? 1)
        if x1 == x0 { x1 = x0 + 1 }
        if y1 == y0 { y1 = y0 + 1; y0 -= 1 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad
        y1 += pad
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (1 - (tf(y) - y0) / (y1 - y0)) * ph }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">\(Self.escape(title))</text>\n"
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
        // Y: five evenly spaced lines (values in log space when logY); X: round numbers (steps, levels).
        for i in 0...4 {
            let fy = y0 + (y1 - y0) * Double(i) / 4, yy = top + (1 - Double(i) / 4) * ph
            let label = logY ? String(format: "%.3g", pow(10, fy)) : String(format: "%.3g", fy)
            s += "<line x1=\"\(left)\" y1=\"\(yy)\" x2=\"\(left + pw)\" y2=\"\(yy)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(label)</text>\n"
        }
        for fx in Self.roundTicks(x0, x1) {
            let xx = px(fx)
            s += "<line x1=\"\(xx)\" y1=\"\(top + ph)\" x2=\"\(xx)\" y2=\"\(top + ph + 4)\" stroke=\"#999\"/>"
            s += "<text x=\"\(xx)\" y=\"\(top + ph + 16)\" text-anchor=\"middle\">\(String(format: "%.4g", fx))</text>\n"
        }
        s += "<text x=\"\(left + pw / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text x=\"14\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(top + ph / 2))\">\(Self.escape(yLabel))</text>\n"
        for (k, ser) in series.enumerated() {
            let pts = ser.points.filter { $0.y.isFinite && (!logY || $0.y > 0) }
            if pts.count > 1 {
                let path = pts.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(ser.color)\" stroke-width=\"1.5\" points=\"\(path)\"/>\n"
            } else if let p = pts.first {
                s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3\" fill=\"\(ser.color)\"/>\n"
            }
            let ly = top + 14 + Double(k) * 14
            s += "<rect x=\"\(left + pw - 150)\" y=\"\(ly - 8)\" width=\"10\" height=\"10\" fill=\"\(ser.color)\"/>"
            s += "<text x=\"\(left + pw - 134)\" y=\"\(ly + 1)\">\(Self.escape(ser.name))</text>\n"
        }
        return s + "</svg>\n"
    }
}
