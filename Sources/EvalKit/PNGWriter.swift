// A minimal PNG encoder: 8-bit RGB or gray, no filtering, the zlib stream made of stored (uncompressed) deflate
// blocks. Larger files than a compressor would write, but no dependency, and any PNG reader decodes them.
import Foundation

public enum PNGWriter {
    /// PNG bytes of a `width`×`height` image with `channels` 3 (RGB) or 1 (gray), row-major interleaved.
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int = 3) -> [UInt8] {
        precondition(channels == 3 || channels == 1, "PNG: 1 or 3 channels")
        precondition(width > 0 && height > 0 && pixels.count == width * height * channels, "PNG: pixel count")
        // Scanlines, each led by filter type 0 (none).
        let row = width * channels
        var raw = [UInt8]()
        raw.reserveCapacity((row + 1) * height)
        for y in 0..<height {
            raw.append(0)
            raw.append(contentsOf: pixels[(y * row)..<((y + 1) * row)])
        }
        var ihdr = [UInt8]()
        ihdr += bigEndian(UInt32(width))
        ihdr += bigEndian(UInt32(height))
        ihdr += [8, channels == 3 ? 2 : 0, 0, 0, 0]   // bit depth, colour type, compression, filter, interlace
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", ihdr)
        out += chunk("IDAT", zlibStored(raw))
        out += chunk("IEND", [])
        return out
    }

    public static func write(_ pixels: [UInt8], width: Int, height: Int, channels: Int = 3, to url: URL) throws {
        do { try Data(encode(pixels, width: width, height: height, channels: channels)).write(to: url) } catch {
            throw EvalError("\(url.path): cannot write (\(error.localizedDescription))")
        }
    }

    /// A zlib stream (RFC 1950: CMF 0x78, FLG 0x01, deflate data, Adler-32 big-endian) whose deflate data (RFC 1951)
    /// are stored blocks of at most 65535 bytes: header byte BFINAL|BTYPE=00, LEN and its complement, little-endian.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var start = 0
        repeat {
            let n = min(65535, data.count - start)
            let final = start + n == data.count
            out.append(final ? 1 : 0)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out.append(contentsOf: data[start..<(start + n)])
            start += n
        } while start < data.count
        out += bigEndian(adler32(data))
        return out
    }

    /// Adler-32 (RFC 1950).
    public static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < data.count {
            // 5552 bytes keep the sums below 2^32 before the modulo (zlib's NMAX).
            let end = min(data.count, i + 5552)
            while i < end { a += UInt32(data[i]); b += a; i += 1 }
            a %= 65521
            b %= 65521
        }
        return b << 16 | a
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 as PNG and zlib define it (reflected, polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF).
    public static func crc32<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    /// Length, type, data, CRC-32 of type + data.
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
    }
}
