import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// Hand-made hostile `.safetensors` files (issue 15): every one must give a one-line ModelError naming the file and
/// the problem, never trap (a trap in the loader kills the whole host application, e.g. a GStreamer pipeline).
final class HostileSafetensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A file of the 8-byte length field (`length`, or the header's size), the header bytes, then `data` bytes.
    func file(_ header: String, data: Int = 0, length: UInt64? = nil, name: String = "hostile.safetensors") throws
        -> URL {
        let json = Data(header.utf8)
        return try file(bytes: json, data: data, length: length, name: name)
    }

    func file(bytes header: Data, data: Int = 0, length: UInt64? = nil, name: String = "hostile.safetensors") throws
        -> URL {
        var out = Data()
        var n = (length ?? UInt64(header.count)).littleEndian
        out.append(Data(bytes: &n, count: 8))
        out.append(header)
        out.append(Data(repeating: 0x3f, count: data))
        let url = dir.appendingPathComponent(name)
        try out.write(to: url)
        return url
    }

    /// Opening `url` throws a one-line ModelError naming its path and containing every one of `words`.
    func assertRefused(_ url: URL, _ words: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try SafetensorsFile(url: url)
            XCTFail("opening succeeded", file: file, line: line)
        } catch let e as ModelError {
            XCTAssertFalse(e.message.contains("\n"), "not one line: \(e.message)", file: file, line: line)
            XCTAssertTrue(e.message.contains(url.path), "'\(e.message)' does not name the file", file: file, line: line)
            for w in words {
                XCTAssertTrue(e.message.contains(w), "'\(e.message)' lacks '\(w)'", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testValidHandMadeFileOpens() throws {
        let url = try file(#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{}}"#, data: 16)
        XCTAssertEqual(try SafetensorsFile(url: url).shape(of: "a"), [2, 2])
    }

    func testTruncatedFiles() throws {
        let empty = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        assertRefused(empty, ["truncated", "0 bytes"])
        let five = dir.appendingPathComponent("five.safetensors")
        try Data([1, 2, 3, 4, 5]).write(to: five)
        assertRefused(five, ["truncated", "5 bytes"])
        // The data area ends before the tensor does.
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: 10),
                      ["tensor 'a'", "outside the data area of 10 bytes", "truncated"])
    }

    func testHeaderLengthPastTheEndOfTheFile() throws {
        assertRefused(try file("{}", length: 1000), ["header length 1000 does not fit in a file of 10 bytes"])
        assertRefused(try file("{}", length: 0), ["header length 0"])
    }

    /// Length fields ≥ 2^63 used to trap converting to Int ("Not enough bits to represent the passed value").
    func testHeaderLengthOf2To63AndMoreIsAnErrorNotATrap() throws {
        for length in [UInt64(1) << 63, UInt64.max, UInt64(Int.max), UInt64(Int.max) - 7] {
            assertRefused(try file("{}", length: length), ["header length \(length) does not fit"])
        }
    }

    /// A header over the 100 MB limit is refused before it is read (a sparse file: no disk space used).
    func testHeaderLengthOverTheLimit() throws {
        let url = try file("{}", length: 150_000_000)
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: 160_000_000)
        try handle.close()
        assertRefused(url, ["header length 150000000", "limit"])
    }

    func testGarbageHeaders() throws {
        assertRefused(try file("this is not json at all!"), ["header is not a JSON object"])
        assertRefused(try file("[1, 2, 3]"), ["header is not a JSON object"])
        assertRefused(try file(bytes: Data([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x7b, 0x7d])),
                      ["header is not a JSON object"])
        assertRefused(try file(#"{"a": 3}"#), ["tensor 'a'", "not an object"])
        assertRefused(try file(#"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#), ["tensor 'a'", "no dtype"])
        assertRefused(try file(#"{"a": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}"#, data: 16),
                      ["tensor 'a'", "'shape'"])
        assertRefused(try file(#"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}"#, data: 16),
                      ["tensor 'a'", "'data_offsets'"])
    }

    func testOffsetsOutOfRange() throws {
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}}"#, data: 8),
                      ["tensor 'a'", "[100, 104)", "outside the data area of 8 bytes"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: 8),
                      ["tensor 'a'", "'data_offsets' must be two non-negative integers"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e300]}}"#, data: 8),
                      ["tensor 'a'", "'data_offsets'"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#,
                               data: 8), ["tensor 'a'", "'data_offsets'"])
    }

    func testOffsetsReversed() throws {
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: 8),
                      ["tensor 'a'", "[8, 4)", "reversed"])
    }

    func testOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"#
            + #""b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        assertRefused(try file(header, data: 24), ["tensors 'a' [0, 16) and 'b' [8, 24) overlap"])
        let same = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#
        assertRefused(try file(same, data: 8), ["'a'", "'b'", "overlap"])
    }

    func testDTypeShapeByteLengthMismatch() throws {
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a' has 8 bytes, expected 16 for F32 [2, 2]"])
        assertRefused(try file(#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a' has 8 bytes, expected 6 for F16 [3]"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a'", "non-negative integers"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a'", "non-negative integers"])
    }

    func testUnknownDType() throws {
        assertRefused(try file(#"{"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a'", "unknown dtype 'Q4_K'"])
        assertRefused(try file(#"{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a'", "no dtype string"])
    }

    /// Shapes whose element or byte count overflows an Int used to trap multiplying; now each names the tensor.
    func testElementCountOverflow() throws {
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                               data: 8), ["tensor 'a'", "element count", "overflows"])
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,8]}}"#,
                               data: 8), ["tensor 'a'", "byte length", "overflows"])
        assertRefused(try file(#"{"a":{"dtype":"I64","shape":[65536,65536,65536,65536],"data_offsets":[0,8]}}"#,
                               data: 8),
                      ["tensor 'a'", "element count of shape [65536, 65536, 65536, 65536] overflows"])
        let dims = Array(repeating: "65536", count: 17).joined(separator: ",")
        assertRefused(try file(#"{"a":{"dtype":"F32","shape":["# + dims + #"],"data_offsets":[0,8]}}"#, data: 8),
                      ["tensor 'a'", "at most 16 dimensions"])
    }

    func testNotARegularFile() throws {
        let folder = dir.appendingPathComponent("folder.safetensors")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        assertRefused(folder, ["not a regular file"])
    }
}
