import XCTest
final class ElementTestsPlaceholder: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
