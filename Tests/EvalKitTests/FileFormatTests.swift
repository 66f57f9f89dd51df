import Foundation
import XCTest
@testable import EvalKit

/// Netpbm reading/writing and the PNG encoder.
final class FileFormatTests: XCTestCase {
    func testNetPBMRoundTrip() throws {
        let rgb = NetPBMImage(width: 3, height: 2, channels: 3, pixels: (0..<18).map { UInt8($0 * 14) })
        XCTAssertEqual(try NetPBM.decode(NetPBM.encode(rgb)), rgb)
        let gray = NetPBMImage(width: 2, height: 2, channels: 1, pixels: [0, 255, 255, 0])
        XCTAssertEqual(try NetPBM.decode(NetPBM.encode(gray)), gray)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("netpbm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("a.ppm")
        try NetPBM.write(rgb, to: url)
        XCTAssertEqual(try NetPBM.read(url, expectChannels: 3), rgb)
        XCTAssertThrowsError(try NetPBM.read(url, expectChannels: 1)) { XCTAssertTrue("\($0)".contains("PGM")) }
    }

    /// Comments anywhere in the header, any whitespace between fields, a lower maxval scaled to 0…255.
    func testHeaderCommentsWhitespaceAndMaxval() throws {
        let header = "P5 # a comment\n#another\r\n 2\t\n# between\n2  \n1\n"
        let image = try NetPBM.decode(Array(header.utf8) + [0, 1, 1, 0, 99])   // trailing bytes are ignored
        XCTAssertEqual(image, NetPBMImage(width: 2, height: 2, channels: 1, pixels: [0, 255, 255, 0]))
        // The raster may start with a byte that looks like whitespace or '#'.
        let tricky = try NetPBM.decode(Array("P5\n1 2\n255\n".utf8) + [10, 35])
        XCTAssertEqual(tricky.pixels, [10, 35])
    }

    func testNetPBMErrors() {
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try NetPBM.decode(bytes, source: "x"); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(Array("GIF89a".utf8)).contains("not a netpbm image"))
        XCTAssertTrue(message(Array("P3\n1 1\n255\n0 0 0\n".utf8)).contains("plain (ASCII)"))
        XCTAssertTrue(message(Array("P7\n".utf8)).contains("unsupported"))
        XCTAssertTrue(message(Array("P6\n2 2\n255\n".utf8) + [1, 2, 3]).contains("truncated"))
        XCTAssertTrue(message(Array("P6\n1 1\n65535\n".utf8) + [UInt8](repeating: 0, count: 6)).contains("16-bit"))
        XCTAssertTrue(message(Array("P6\nx 1\n255\n".utf8)).contains("width"))
        XCTAssertTrue(message(Array("P6\n1 1".utf8)).contains("maxval"))
        XCTAssertTrue(message(Array("P6\n0 1\n255\n".utf8)).contains("empty"))
        XCTAssertTrue(message([]).contains("not a netpbm"))
    }

    func testChecksums() {
        XCTAssertEqual(PNGWriter.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(PNGWriter.adler32(Array("Wikipedia".utf8)), 0x11E6_0398)
        XCTAssertEqual(PNGWriter.adler32([]), 1)
        // Long input: the deferred modulo must not overflow.
        let long = [UInt8](repeating: 255, count: 100_000)
        var a: UInt64 = 1, b: UInt64 = 0
        for v in long { a = (a + UInt64(v)) % 65521; b = (b + a) % 65521 }
        XCTAssertEqual(PNGWriter.adler32(long), UInt32(b << 16 | a))
    }

    /// Splits a PNG into chunks (checking every CRC), inflates the stored blocks of IDAT and checks the Adler-32.
    func decode(_ png: [UInt8]) throws -> (ihdr: [UInt8], raw: [UInt8], types: [String]) {
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func u32(_ i: Int) -> Int { Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3]) }
        var i = 8, ihdr: [UInt8] = [], idat: [UInt8] = [], types: [String] = []
        while i < png.count {
            let n = u32(i)
            let type = String(decoding: png[(i + 4)..<(i + 8)], as: UTF8.self)
            XCTAssertEqual(UInt32(u32(i + 8 + n)), PNGWriter.crc32(png[(i + 4)..<(i + 8 + n)]), "CRC of \(type)")
            let data = Array(png[(i + 8)..<(i + 8 + n)])
            if type == "IHDR" { ihdr = data }
            if type == "IDAT" { idat += data }
            types.append(type)
            i += 12 + n
        }
        XCTAssertEqual(idat[0], 0x78)
        XCTAssertEqual((Int(idat[0]) << 8 | Int(idat[1])) % 31, 0, "zlib header check bits")
        var raw: [UInt8] = [], k = 2, final = false
        while !final {
            final = idat[k] & 1 == 1
            XCTAssertEqual(idat[k] >> 1, 0, "stored block")
            let len = Int(idat[k + 1]) | Int(idat[k + 2]) << 8, nlen = Int(idat[k + 3]) | Int(idat[k + 4]) << 8
            XCTAssertEqual(len ^ 0xFFFF, nlen)
            XCTAssertLessThanOrEqual(len, 65535)
            raw += idat[(k + 5)..<(k + 5 + len)]
            k += 5 + len
        }
        let adler = UInt32(idat[k]) << 24 | UInt32(idat[k + 1]) << 16 | UInt32(idat[k + 2]) << 8 | UInt32(idat[k + 3])
        XCTAssertEqual(adler, PNGWriter.adler32(raw))
        XCTAssertEqual(k + 4, idat.count)
        return (ihdr, raw, types)
    }

    func testPNGDecodesBack() throws {
        for (w, h, channels) in [(3, 2, 3), (1, 1, 1), (200, 150, 3)] {   // the last needs two stored blocks
            var pixels = [UInt8](repeating: 0, count: w * h * channels)
            for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i / 5) }
            let png = PNGWriter.encode(pixels, width: w, height: h, channels: channels)
            let (ihdr, raw, types) = try decode(png)
            XCTAssertEqual(types, ["IHDR", "IDAT", "IEND"])
            XCTAssertEqual(ihdr, [0, 0, UInt8(w >> 8), UInt8(w & 255), 0, 0, UInt8(h >> 8), UInt8(h & 255),
                                  8, channels == 3 ? 2 : 0, 0, 0, 0])
            var expected: [UInt8] = []
            for y in 0..<h {
                expected.append(0)
                expected += pixels[(y * w * channels)..<((y + 1) * w * channels)]
            }
            XCTAssertEqual(raw, expected)
        }
    }

    func testJSONLine() {
        let line = JSONValue.object([("a", .int(3)), ("b", .number(0.25)), ("c", .number(nil)), ("d", .number(2)),
                                     ("e", .string("x\"y\n")), ("f", .array([.string("p"), .null])),
                                     ("g", .number(.infinity))])
        XCTAssertEqual(line, #"{"a": 3, "b": 0.25, "c": null, "d": 2.0, "e": "x\"y\n", "f": ["p", null], "g": null}"#)
        let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        XCTAssertEqual(parsed?["b"] as? Double, 0.25)
    }
}
