import XCTest
@testable import TopiaryCore

/// Axis ticks of the report's line plots land on round numbers (steps, sparsity levels).
final class PlotTests: XCTestCase {
    func testTicksAreRoundNumbersInsideTheRange() {
        XCTAssertEqual(SVGLinePlot.roundTicks(1, 30), [5, 10, 15, 20, 25, 30])
        XCTAssertEqual(SVGLinePlot.roundTicks(0, 213), [0, 50, 100, 150, 200])
        let levels = SVGLinePlot.roundTicks(0.01, 0.99)
        XCTAssertEqual(levels.count, 4)
        for (t, want) in zip(levels, [0.2, 0.4, 0.6, 0.8]) { XCTAssertEqual(t, want, accuracy: 1e-12) }
        XCTAssertEqual(SVGLinePlot.roundTicks(5, 5), [5])
    }

    func testPlotLabelsTheRoundTicks() {
        let plot = SVGLinePlot(
            title: "loss", xLabel: "step", yLabel: "loss",
            series: [.init(name: "train", points: (1...30).map { (Double($0), 5 - Double($0) / 10) }, color: "#1f77b4")])
        let svg = plot.render()
        XCTAssertTrue(svg.contains(">25</text>"))
        XCTAssertFalse(svg.contains(">8.25</text>"))
    }

    /// Five series, two of them capped along the top edge (the seed sweep's −magnitude and movement): the legend leaves
    /// the plot's top-right corner for a column beside it; with the corner free it stays inside.
    func testLegendLeavesACrowdedCorner() throws {
        func width(_ highest: Double) -> Double {
            let series = (0..<5).map { i in
                SVGLinePlot.Series(name: "method-\(i)", points: [(0.01, 1e5), (0.5, 100), (0.99, i < 2 ? highest : 30)], color: "#000")
            }
            var plot = SVGLinePlot(title: "sweep", xLabel: "level", yLabel: "ppl", series: series, logY: true)
            plot.yCap = 1e6
            let svg = plot.render()
            let header = svg.split(separator: ">").first ?? ""
            let w = header.components(separatedBy: "width=\"").dropFirst().first?.split(separator: "\"").first
            return Double(w.map(String.init) ?? "") ?? 0
        }
        let plain = SVGLinePlot(title: "", xLabel: "", yLabel: "", series: []).width
        XCTAssertEqual(width(40), plain)  // every line low at the right: the corner is free
        XCTAssertGreaterThan(width(1e40), plain)  // lines along the capped top edge: legend beside the plot
    }

    /// A sweep of 23 methods: every series has its own colour and dash pair, the legend sits right of the plot inside
    /// the image, and values past the cap are drawn at the top edge with a note.
    func testManySeriesStayDistinctAndInside() throws {
        let styles = SVGLinePlot.styles(23)
        XCTAssertEqual(Set(styles.map { "\($0.color)|\($0.dash ?? "-")" }).count, 23)
        let series = styles.enumerated().map { i, st in
            SVGLinePlot.Series(
                name: "method-\(i)", points: [(0.1, 30 + Double(i)), (0.9, i == 0 ? 1e40 : 100)], color: st.color, dash: st.dash)
        }
        var plot = SVGLinePlot(title: "sweep", xLabel: "level", yLabel: "ppl", series: series, logY: true)
        plot.yCap = 1e6
        let svg = plot.render()
        let size = try XCTUnwrap(svg.range(of: #"width="(\d+)" height="(\d+)""#, options: .regularExpression)).lowerBound
        let header = String(svg[size...].prefix(40))
        let numbers = header.split(whereSeparator: { !$0.isNumber }).compactMap { Double($0) }
        let (w, h) = (numbers[0], numbers[1])
        XCTAssertGreaterThan(w, 640)
        for i in 0..<23 { XCTAssertTrue(svg.contains(">method-\(i)</text>")) }
        // Every legend text's x and y lie inside the image.
        let texts = svg.components(separatedBy: "<text x=\"").dropFirst().compactMap { t -> (Double, Double)? in
            let parts = t.split(separator: "\"")
            guard parts.count > 2, let x = Double(parts[0]), let y = Double(parts[2]) else { return nil }
            return (x, y)
        }
        for (x, y) in texts { XCTAssertTrue(x >= 0 && x <= w && y >= 0 && y <= h, "text at \(x), \(y) outside \(w) × \(h)") }
        XCTAssertTrue(svg.contains("values above 1e+06 are drawn at the top edge"))
        XCTAssertTrue(svg.contains("stroke-dasharray=\"6 3\""))
    }
}
