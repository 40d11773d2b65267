import XCTest
@testable import TopiaryGGUF

final class TopiaryGGUFPlaceholderTests: XCTestCase {
    func testModuleLinks() { XCTAssertTrue(true) }
}
