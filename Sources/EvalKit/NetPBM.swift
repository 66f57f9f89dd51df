// Binary netpbm images, the evaluation clips' frame and mask format: PPM (P6, RGB) and PGM (P5, gray), one byte per
// sample. The header follows the netpbm spec: magic, then width, height and maxval as ASCII decimals separated by
// whitespace (space, tab, CR, LF, VT, FF), with `#` comments to the end of a line anywhere before maxval; exactly one
// whitespace byte after maxval, then the raster.
import Foundation

/// A one-line error about evaluation input or output that a user can act on.
public struct EvalError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A decoded netpbm image: `channels` 3 (PPM) or 1 (PGM), row-major interleaved samples scaled to 0…255.
public struct NetPBMImage: Equatable, Sendable {
    public var width: Int, height: Int, channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "\(width)x\(height)x\(channels) needs that many bytes")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

public enum NetPBM {
    /// Reads a P6 or P5 file; `expectChannels` (3 or 1) rejects the other kind with a message naming the file.
    public static func read(_ url: URL, expectChannels: Int? = nil) throws -> NetPBMImage {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw EvalError("\(url.path): cannot read file")
        }
        let image = try decode([UInt8](data), source: url.path)
        if let c = expectChannels, c != image.channels {
            throw EvalError("\(url.path): expected a \(c == 3 ? "PPM (P6, RGB)" : "PGM (P5, gray)") image, found "
                            + (image.channels == 3 ? "a PPM" : "a PGM"))
        }
        return image
    }

    /// Decodes binary PPM/PGM bytes. maxval 1…255 is scaled to 0…255; 16-bit (maxval > 255) and the plain
    /// (ASCII) P2/P3 variants are refused. Bytes after the raster are ignored (the spec allows more images).
    public static func decode(_ bytes: [UInt8], source: String = "image") throws -> NetPBMImage {
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "P") else {
            throw EvalError("\(source): not a netpbm image (no 'P' magic number)")
        }
        let channels: Int
        switch bytes[1] {
        case UInt8(ascii: "6"): channels = 3
        case UInt8(ascii: "5"): channels = 1
        case UInt8(ascii: "3"), UInt8(ascii: "2"):
            throw EvalError("\(source): plain (ASCII) P\(Character(UnicodeScalar(bytes[1]))) is not supported; "
                            + "expected binary P6 (RGB) or P5 (gray)")
        default:
            throw EvalError("\(source): unsupported netpbm kind 'P\(Character(UnicodeScalar(bytes[1])))'; "
                            + "expected binary P6 (RGB) or P5 (gray)")
        }
        var i = 2
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        func number(_ what: String) throws -> Int {
            // Whitespace and comments before the number.
            while i < bytes.count {
                if isSpace(bytes[i]) { i += 1 } else if bytes[i] == UInt8(ascii: "#") {
                    while i < bytes.count && bytes[i] != 0x0A && bytes[i] != 0x0D { i += 1 }
                } else { break }
            }
            guard i < bytes.count else { throw EvalError("\(source): header ends before the \(what)") }
            guard i == 2 || isSpace(bytes[i - 1]) || bytes[i - 1] == 0x0A || bytes[i - 1] == 0x0D else {
                throw EvalError("\(source): no whitespace before the \(what)")
            }
            var v = 0, digits = 0
            while i < bytes.count, (0x30...0x39).contains(bytes[i]) {
                v = v * 10 + Int(bytes[i] - 0x30)
                digits += 1
                i += 1
                guard v <= 1 << 24 else { throw EvalError("\(source): \(what) is too large") }
            }
            guard digits > 0 else {
                throw EvalError("\(source): malformed header: expected the \(what) as a decimal number")
            }
            return v
        }
        guard bytes.count > 2, isSpace(bytes[2]) || bytes[2] == UInt8(ascii: "#") else {
            throw EvalError("\(source): malformed header: no whitespace after the magic number")
        }
        let width = try number("width"), height = try number("height"), maxval = try number("maxval")
        guard width > 0, height > 0 else { throw EvalError("\(source): empty image (\(width)x\(height))") }
        guard (1...65535).contains(maxval) else { throw EvalError("\(source): maxval \(maxval) outside 1…65535") }
        guard maxval <= 255 else {
            throw EvalError("\(source): 16-bit samples (maxval \(maxval)) are not supported; expected maxval 255")
        }
        guard i < bytes.count, isSpace(bytes[i]) else {
            throw EvalError("\(source): malformed header: expected one whitespace byte after maxval")
        }
        i += 1
        let n = width * height * channels
        guard bytes.count - i >= n else {
            throw EvalError("\(source): truncated raster: \(width)x\(height)x\(channels) needs \(n) bytes, "
                            + "found \(bytes.count - i)")
        }
        var pixels = Array(bytes[i..<(i + n)])
        if maxval != 255 {
            for k in pixels.indices {
                guard Int(pixels[k]) <= maxval else {
                    throw EvalError("\(source): sample \(pixels[k]) above maxval \(maxval)")
                }
                pixels[k] = UInt8((Int(pixels[k]) * 255 * 2 + maxval) / (2 * maxval))
            }
        }
        return NetPBMImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// Binary P6 (3 channels) or P5 (1 channel) bytes, maxval 255.
    public static func encode(_ image: NetPBMImage) -> [UInt8] {
        precondition(image.channels == 3 || image.channels == 1, "netpbm: 1 or 3 channels")
        let header = "P\(image.channels == 3 ? 6 : 5)\n\(image.width) \(image.height)\n255\n"
        return Array(header.utf8) + image.pixels
    }

    public static func write(_ image: NetPBMImage, to url: URL) throws {
        do { try Data(encode(image)).write(to: url) } catch {
            throw EvalError("\(url.path): cannot write (\(error.localizedDescription))")
        }
    }
}
