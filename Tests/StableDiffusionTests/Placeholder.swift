import XCTest
final class StableDiffusionTestsPlaceholder: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
