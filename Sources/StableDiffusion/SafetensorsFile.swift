import Foundation
import TensorKernels

/// A memory-mapped `.safetensors` file: 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data area.
/// The header is validated on open; every error names the file and the tensor.
public final class SafetensorsFile {
    public enum DType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32", f64 = "F64"
        var size: Int {
            switch self { case .f32, .i32: 4; case .f16, .bf16: 2; case .i64, .f64: 8 }
        }
    }

    public struct Entry: Sendable {
        public let dtype: DType
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    public let url: URL
    public let entries: [String: Entry]
    private let base: UnsafeMutableRawPointer
    private let length: Int
    private let dataStart: Int

    public var names: [String] { entries.keys.sorted() }
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }

    /// The largest header accepted (the reference implementation's limit): a bigger one is hostile or corrupt.
    public static let maximumHeaderLength: UInt64 = 100_000_000

    /// Opens and validates `url`. Every size and offset in the file is checked before it is used, with checked
    /// arithmetic (a hostile header must not overflow an `Int`); every error names the file by its path.
    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let code = errno
            throw ModelError("\(path): cannot open (\(String(cString: strerror(code))))",
                             kind: code == ENOENT ? .notFound : .invalid)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError("\(path): cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelError("\(path): not a regular file") }
        guard let size = Int(exactly: st.st_size), size >= 8 else {
            throw Self.truncated(path, size: Int64(st.st_size))
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ModelError("\(path): cannot map the file")
        }
        base = map
        length = size
        var ok = false
        defer { if !ok { munmap(map, size) } }
        let header = try Self.parseHeader(UnsafeRawBufferPointer(start: map, count: size), path: path)
        dataStart = header.dataStart
        entries = header.entries
        ok = true
    }

    /// What `parseHeader` finds: the validated entries and where the data area starts in the file.
    public struct Header: Sendable {
        public let entries: [String: Entry]
        public let dataStart: Int
    }

    private static func truncated(_ path: String, size: Int64) -> ModelError {
        ModelError("\(path): truncated file (\(size) bytes, too short for the 8-byte header length)")
    }

    /// Parses and validates the header of a whole safetensors file held in memory (`file`: every byte of it; the
    /// file-based `init(url:)` maps the file and calls this). Every size and offset is checked before it is used,
    /// with checked arithmetic: hostile bytes give a `ModelError` naming `path`, never a trap. Fuzzed by
    /// `Fuzz/FuzzSafetensors` (`make fuzz`).
    public static func parseHeader(_ file: UnsafeRawBufferPointer, path: String) throws -> Header {
        let size = file.count
        guard size >= 8, let map = file.baseAddress else { throw truncated(path, size: Int64(size)) }
        let rawHeaderLength = UInt64(littleEndian: map.loadUnaligned(as: UInt64.self))
        guard rawHeaderLength > 0, rawHeaderLength <= UInt64(size - 8) else {
            throw ModelError("\(path): header length \(rawHeaderLength) does not fit in a file of \(size) bytes "
                                 + "(truncated or not safetensors)")
        }
        guard rawHeaderLength <= Self.maximumHeaderLength, let headerLength = Int(exactly: rawHeaderLength) else {
            throw ModelError("\(path): header length \(rawHeaderLength) is over the limit of "
                                 + "\(Self.maximumHeaderLength) bytes (corrupt or not safetensors)")
        }
        let dataStart = 8 + headerLength
        let headerData = Data(bytes: map + 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw ModelError("\(path): header is not a JSON object (corrupt or not safetensors)")
        }
        let dataLength = size - dataStart
        var entries: [String: Entry] = [:]
        for (key, value) in header where key != "__metadata__" {
            entries[key] = try Self.entry(key, value, dataLength: dataLength, path: path)
        }
        let sorted = entries.sorted { ($0.value.begin, $0.value.end, $0.key) < ($1.value.begin, $1.value.end, $1.key) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.value.begin < a.value.end {
            throw ModelError("\(path): tensors '\(a.key)' [\(a.value.begin), \(a.value.end)) and '\(b.key)' "
                                 + "[\(b.value.begin), \(b.value.end)) overlap in the data area")
        }
        return Header(entries: entries, dataStart: dataStart)
    }

    /// A non-negative integer of the header, or nil (fractions, negatives, huge values, strings, booleans).
    private static func index(_ v: Any) -> Int? {
        guard let i = JSONConfig.exactInt(v), i >= 0 else { return nil }
        return i
    }

    /// One header entry, validated against the data area's length.
    private static func entry(_ key: String, _ value: Any, dataLength: Int, path: String) throws -> Entry {
        let what = "\(path): tensor '\(key)'"
        guard let info = value as? [String: Any] else { throw ModelError("\(what): header entry is not an object") }
        guard let dt = info["dtype"] as? String else { throw ModelError("\(what): no dtype string") }
        guard let dtype = DType(rawValue: dt) else {
            throw ModelError("\(what): unknown dtype '\(dt.prefix(20))' (supported: F32, F16, BF16, F64, I64, I32)")
        }
        guard let rawShape = info["shape"] as? [Any], rawShape.count <= 16 else {
            throw ModelError("\(what): 'shape' is not an array of at most 16 dimensions")
        }
        let shape = rawShape.compactMap(index)
        guard shape.count == rawShape.count else {
            throw ModelError("\(what): 'shape' must hold non-negative integers, found \(rawShape)")
        }
        guard let rawOffsets = info["data_offsets"] as? [Any], rawOffsets.count == 2,
              let begin = index(rawOffsets[0]), let end = index(rawOffsets[1]) else {
            throw ModelError("\(what): 'data_offsets' must be two non-negative integers [begin, end]")
        }
        guard begin <= end else {
            throw ModelError("\(what): data_offsets [\(begin), \(end)) are reversed (end before begin)")
        }
        guard end <= dataLength else {
            throw ModelError("\(what): data [\(begin), \(end)) lies outside the data area "
                                 + "of \(dataLength) bytes (truncated file?)")
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw ModelError("\(what): element count of shape \(shape) overflows") }
            elements = product
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw ModelError("\(what): byte length of \(dt) \(shape) overflows") }
        guard end - begin == expected else {
            throw ModelError("\(what) has \(end - begin) bytes, expected \(expected) for \(dt) \(shape) "
                                 + "(dtype, shape and data_offsets disagree)")
        }
        return Entry(dtype: dtype, shape: shape, begin: begin, end: end)
    }

    deinit { munmap(base, length) }

    /// The tensor as f32 (F16 and BF16 converted on load; integer types converted by value).
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = entries[name] else { throw ModelError("\(url.path): no tensor '\(name)'") }
        let t = Tensor(shape: e.shape)
        let src = base + dataStart + e.begin
        let n = t.count
        switch e.dtype {
        case .f32:
            UnsafeMutableRawPointer(t.data).copyMemory(from: src, byteCount: n * 4)
        case .f16:
            let p = src.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { t.data[i] = Float(Float16(bitPattern: UInt16(littleEndian: p[i]))) }
        case .bf16:
            let p = src.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { t.data[i] = Float(bitPattern: UInt32(UInt16(littleEndian: p[i])) << 16) }
        case .i64:
            for i in 0..<n { t.data[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
        case .i32:
            for i in 0..<n { t.data[i] = Float(src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        case .f64:
            for i in 0..<n { t.data[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        }
        return t
    }

    /// Integer tensor values (I64/I32), e.g. `input_ids`.
    public func int64s(_ name: String) throws -> (shape: [Int], values: [Int64]) {
        guard let e = entries[name] else { throw ModelError("\(url.path): no tensor '\(name)'") }
        let src = base + dataStart + e.begin
        let n = e.shape.reduce(1, *)
        switch e.dtype {
        case .i64: return (e.shape, (0..<n).map { src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) })
        case .i32: return (e.shape, (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) })
        default: return (e.shape, try tensor(name).array.map { Int64($0) })
        }
    }

    /// Writes F32 tensors and I64 tensors (header padded to 8 bytes, tensors in name order).
    public static func write(_ tensors: [String: Tensor], int64: [String: (shape: [Int], values: [Int64])] = [:],
                             to url: URL) throws {
        var header: [String: Any] = [:]
        var blobs: [(String, Data)] = []
        for (k, t) in tensors { blobs.append((k, Data(bytes: t.data, count: t.count * 4))) }
        for (k, v) in int64 { blobs.append((k, v.values.withUnsafeBytes { Data($0) })) }
        blobs.sort { $0.0 < $1.0 }
        var offset = 0
        for (k, d) in blobs {
            let isInt = int64[k] != nil
            header[k] = ["dtype": isInt ? "I64" : "F32", "shape": isInt ? int64[k]!.shape : tensors[k]!.shape,
                         "data_offsets": [offset, offset + d.count]]
            offset += d.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        var len = UInt64(json.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(json)
        for (_, d) in blobs { out.append(d) }
        do { try out.write(to: url) } catch {
            throw ModelError("\(url.path): cannot write (\(error.localizedDescription))")
        }
    }
}
