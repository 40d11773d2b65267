import XCTest
@testable import TopiaryTokenizers

final class TopiaryTokenizersPlaceholderTests: XCTestCase {
    func testModuleLinks() { XCTAssertTrue(true) }
}
