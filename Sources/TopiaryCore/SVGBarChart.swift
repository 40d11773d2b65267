import Foundation

/// A small self-contained SVG chart of grouped bars (one group per category, one bar per series), for
/// per-layer shapes and histograms. Each bar carries a `<title>` tooltip with its exact value.
public struct SVGBarChart {
    public struct Series {
        public var name: String
        public var values: [Double]
        public var color: String
        public init(name: String, values: [Double], color: String) {
            self.name = name
            self.values = values
            self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var categories: [String]
    public var series: [Series]
    /// Bars of different series drawn over each other (histograms) instead of side by side.
    public var overlay = false
    public var yMax: Double?
    public var width = 720.0, height = 320.0

    public init(title: String, xLabel: String, yLabel: String, categories: [String], series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.categories = categories
        self.series = series
    }

    /// A histogram of each series' samples over common bins.
    public static func histogram(
        title: String, xLabel: String, samples: [(name: String, values: [Double], color: String)], bins: Int = 30
    ) -> SVGBarChart {
        let all = samples.flatMap(\.values).filter(\.isFinite)
        var lo = all.min() ?? 0, hi = all.max() ?? 1
        if hi <= lo { hi = lo + 1; lo -= 1 }
        let width = (hi - lo) / Double(bins)
        let categories = (0..<bins).map { String(format: "%.3g", lo + (Double($0) + 0.5) * width) }
        let series = samples.map { s -> Series in
            var counts = [Double](repeating: 0, count: bins)
            for v in s.values where v.isFinite { counts[min(bins - 1, Int((v - lo) / width))] += 1 }
            let total = max(1, counts.reduce(0, +))
            return Series(name: s.name, values: counts.map { $0 / total }, color: s.color)
        }
        var chart = SVGBarChart(title: title, xLabel: xLabel, yLabel: "fraction of units", categories: categories, series: series)
        chart.overlay = true
        return chart
    }

    public func render() -> String {
        let left = 56.0, right = 16.0, top = 48.0, bottom = 48.0
        let pw = width - left - right, ph = height - top - bottom
        let maxValue = yMax ?? max(1e-12, series.flatMap(\.values).filter(\.isFinite).max() ?? 1)
        let n = max(1, categories.count)
        let slot = pw / Double(n)
        let barWidth = overlay ? slot * 0.9 : slot * 0.8 / Double(max(1, series.count))
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) "
            + "\(Int(height))\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">\(SVGLinePlot.escape(title))</text>\n"
        for i in 0...4 {
            let v = maxValue * Double(i) / 4, y = top + ph * (1 - Double(i) / 4)
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + pw)\" y2=\"\(y)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(String(format: "%.3g", v))</text>\n"
        }
        s += "<line x1=\"\(left)\" y1=\"\(top + ph)\" x2=\"\(left + pw)\" y2=\"\(top + ph)\" stroke=\"#999\"/>\n"
        let labelEvery = max(1, Int((Double(n) * 28 / pw).rounded(.up)))
        for (i, c) in categories.enumerated() where i % labelEvery == 0 {
            s +=
                "<text x=\"\(String(format: "%.1f", left + slot * (Double(i) + 0.5)))\" y=\"\(top + ph + 14)\" "
                + "text-anchor=\"middle\">\(SVGLinePlot.escape(c))</text>\n"
        }
        for (k, ser) in series.enumerated() {
            for (i, v) in ser.values.enumerated() where i < n && v.isFinite && v > 0 {
                let h = min(1, v / maxValue) * ph
                let x =
                    overlay
                    ? left + slot * Double(i) + (slot - barWidth) / 2
                    : left + slot * Double(i) + slot * 0.1 + barWidth * Double(k)
                s += String(
                    format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"%@><title>%@ %@: %@</title></rect>\n",
                    x, top + ph - h, barWidth, h, ser.color, overlay ? " fill-opacity=\"0.55\"" : "",
                    SVGLinePlot.escape(ser.name), SVGLinePlot.escape(categories[i]), String(format: "%.4g", v))
            }
            let lx = left + Double(k) * 170, ly = top - 8
            s += "<rect x=\"\(lx)\" y=\"\(ly - 8)\" width=\"10\" height=\"10\" fill=\"\(ser.color)\"/>"
            s += "<text x=\"\(lx + 14)\" y=\"\(ly + 1)\">\(SVGLinePlot.escape(ser.name))</text>\n"
        }
        s += "<text x=\"\(left + pw / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">\(SVGLinePlot.escape(xLabel))</text>\n"
        s +=
            "<text x=\"14\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 "
            + "\(top + ph / 2))\">\(SVGLinePlot.escape(yLabel))</text>\n"
        return s + "</svg>\n"
    }
}
