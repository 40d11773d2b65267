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
        let plot = SVGLinePlot(title: "loss", xLabel: "step", yLabel: "loss",
                               series: [.init(name: "train", points: (1...30).map { (Double($0), 5 - Double($0) / 10) }, color: "#1f77b4")])
        let svg = plot.render()
        XCTAssertTrue(svg.contains(">25</text>"))
        XCTAssertFalse(svg.contains(">8.25</text>"))
    }
}
