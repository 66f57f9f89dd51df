import Foundation
import XCTest
import StableDiffusion
import TensorKernels

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    static func tensors(_ path: String) throws -> SafetensorsFile { try SafetensorsFile(url: url(path)) }
}

/// max|a − b| over two tensors of one shape.
func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
    return zip(UnsafeBufferPointer(start: a.data, count: a.count),
               UnsafeBufferPointer(start: b.data, count: b.count)).map { abs($0 - $1) }.max() ?? 0
}

/// max|a − b| / max|b|, the relative max error the parity targets are stated in.
func relativeMaxError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = 0
    for i in 0..<a.count { diff = max(diff, abs(a.data[i] - b.data[i])); scale = max(scale, abs(b.data[i])) }
    return diff / max(scale, 1e-12)
}
