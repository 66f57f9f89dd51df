import XCTest
final class WindowEditorTestsPlaceholder: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
