// A contiguous, row-major f32 tensor. Reference semantics: kernels return new tensors or write into
// tensors they are given; `reshaped` shares storage. Memory is 64-byte aligned for SIMD and BLAS.
import Foundation

#if os(Linux)
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let owned: Bool
    private let keepAlive: AnyObject?

    /// glibc hands blocks above its mmap threshold (128 KB, adapting up to 32 MB) straight to mmap and back to the
    /// kernel on free, so every activation of a forward pass page-faults its memory in again (measured: ~8 % of a
    /// 512 px UNet forward in clear_page). Tensors are allocated and freed in the same sizes step after step: keep
    /// blocks up to 32 MB (glibc's ceiling) in the heap and do not trim it.
    static let allocatorTuned: Void = {
        #if os(Linux)
        _ = glibcMallopt(-3, 32 << 20) // M_MMAP_THRESHOLD (malloc.h is not in Glibc's module map)
        _ = glibcMallopt(-1, 512 << 20) // M_TRIM_THRESHOLD
        #endif
    }()

    /// Fresh storage, zeroed unless the caller overwrites every element itself (`zeroed: false`).
    public init(count: Int, zeroed: Bool = true) {
        _ = TensorStorage.allocatorTuned
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        var raw: UnsafeMutableRawPointer?
        precondition(posix_memalign(&raw, 64, bytes) == 0 && raw != nil, "out of memory allocating \(bytes) bytes")
        if zeroed { memset(raw!, 0, bytes) }
        pointer = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        owned = true
        keepAlive = nil
    }

    /// Storage that borrows memory kept alive by `owner` (a memory map, another storage).
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        owned = false
        keepAlive = owner
    }

    deinit { if owned { free(pointer) } }
}

public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let count: Int
    public let storage: TensorStorage
    /// Start of this tensor's elements (views may start inside a larger storage).
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor.
    public convenience init(shape: [Int]) { self.init(shape: shape, zeroed: true) }

    /// A tensor whose elements are not initialised: only for outputs a kernel overwrites completely.
    public convenience init(uninitializedShape shape: [Int]) { self.init(shape: shape, zeroed: false) }

    private init(shape: [Int], zeroed: Bool) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        storage = TensorStorage(count: count, zeroed: zeroed)
        data = storage.pointer
    }

    public convenience init(shape: [Int], repeating value: Float) {
        self.init(shape: shape)
        if value != 0 { data.update(repeating: value, count: count) }
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A view of `count(shape)` elements starting at `offset` of `storage`.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= storage.count,
                     "view \(shape) at \(offset) outside storage of \(storage.count)")
        self.shape = shape
        count = n
        self.storage = storage
        data = storage.pointer + offset
    }

    public var rank: Int { shape.count }
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// Same elements, new shape (shares storage). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            s[i] = known == 0 ? 0 : count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: s, storage: storage, offset: data - storage.pointer)
    }

    /// Rows [start, start+length) along the first dimension, sharing storage.
    public func slice(first start: Int, length: Int) -> Tensor {
        precondition(rank >= 1 && start >= 0 && start + length <= shape[0],
                     "slice \(start)..<\(start + length) of \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [length] + shape.dropFirst(), storage: storage,
                      offset: (data - storage.pointer) + start * inner)
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    public var description: String { "Tensor\(shape)" }
}
