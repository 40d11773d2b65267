import XCTest
@testable import TopiaryModels

final class TopiaryModelsPlaceholderTests: XCTestCase {
    func testModuleLinks() { XCTAssertTrue(true) }
}
