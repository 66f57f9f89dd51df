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

    public init(url: URL) throws {
        self.url = url
        let name = url.lastPathComponent
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            let code = errno
            throw ModelError("\(url.path): cannot open (\(String(cString: strerror(code))))",
                             kind: code == ENOENT ? .notFound : .invalid)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError("\(url.path): cannot stat") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw ModelError("\(name): truncated file (\(size) bytes, no header length)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ModelError("\(url.path): cannot map the file")
        }
        base = map
        length = size
        var ok = false
        defer { if !ok { munmap(map, size) } }

        let headerLength = Int(map.loadUnaligned(as: UInt64.self).littleEndian)
        guard headerLength > 0, headerLength <= size - 8 else {
            throw ModelError("\(name): header length \(headerLength) does not fit in a file of \(size) bytes "
                                 + "(truncated or not safetensors)")
        }
        dataStart = 8 + headerLength
        let headerData = Data(bytes: map + 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw ModelError("\(name): header is not a JSON object")
        }
        let dataLength = size - dataStart
        var entries: [String: Entry] = [:]
        for (key, value) in header where key != "__metadata__" {
            guard let info = value as? [String: Any], let dt = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int],
                  offsets.count == 2 else {
                throw ModelError("\(name): tensor '\(key)' has a malformed header entry")
            }
            guard let dtype = DType(rawValue: dt) else {
                throw ModelError("\(name): tensor '\(key)' has unsupported dtype \(dt)")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw ModelError("\(name): tensor '\(key)' has a negative dimension \(shape)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw ModelError("\(name): tensor '\(key)' data [\(begin), \(end)) lies outside the data area "
                                     + "of \(dataLength) bytes (truncated file?)")
            }
            let expected = shape.reduce(1, *) * dtype.size
            guard end - begin == expected else {
                throw ModelError("\(name): tensor '\(key)' has \(end - begin) bytes, "
                                     + "expected \(expected) for \(dt) \(shape)")
            }
            entries[key] = Entry(dtype: dtype, shape: shape, begin: begin, end: end)
        }
        let sorted = entries.sorted { $0.value.begin < $1.value.begin }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.value.begin < a.value.end {
            throw ModelError("\(name): tensors '\(a.key)' and '\(b.key)' overlap in the data area")
        }
        self.entries = entries
        ok = true
    }

    deinit { munmap(base, length) }

    /// The tensor as f32 (F16 and BF16 converted on load; integer types converted by value).
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = entries[name] else { throw ModelError("\(url.lastPathComponent): no tensor '\(name)'") }
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
        guard let e = entries[name] else { throw ModelError("\(url.lastPathComponent): no tensor '\(name)'") }
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
