import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static func url(_ path: String) -> URL { root.appendingPathComponent("Fixtures").appendingPathComponent(path) }
    /// The tiny random SD 1.x pipeline of the parity fixtures: fast, and every path of the editor runs on it.
    static let tinyModel = url("tiny-sd1")
}

final class TokenMergingTests: XCTestCase {
    /// Same tokens, same order, same values as tomesd's bipartite_soft_matching_random2d(no_rand=True) + merge("mean").
    func testMatchesTomesd() throws {
        for name in ["8x8", "7x6", "12x16"] {
            let file = try SafetensorsFile(url: Fixtures.url("tome/tome_\(name).safetensors"))
            let metric = try file.tensor("metric"), x = try file.tensor("x"), expected = try file.tensor("merged")
            let dims = try file.int64s("shape").values.map(Int.init)
            let (h, w, r) = (dims[0], dims[1], dims[2])
            let (b, n, c) = (metric.shape[0], metric.shape[1], metric.shape[2])
            // tomesd's destination order comes from an unstable torch argsort (recorded by the fixture script).
            let dstOrder = try file.int64s("dst_order").values.map(Int.init)
            XCTAssertEqual(expected.shape, [b, n - r, c])
            for item in 0..<b {
                let plan = SaliencyTokenMerging.plan(metric: metric.data + item * n * c, channels: c, frames: 1,
                                                     height: h, width: w, r: r, destinations: .topLeft)
                let merged = SaliencyTokenMerging.merge(x.data + item * n * c, channels: c, plan: plan)
                XCTAssertEqual(merged.tokens.shape, [1, n - r, c], name)
                // Our rows: unmerged (best score first, as tomesd), then destinations ascending; map to tomesd's order.
                let u = plan.unmerged.count
                XCTAssertEqual(plan.destinations.count, dstOrder.count)
                let rowOf = (0..<(n - r)).map { k in
                    k < u ? k : u + plan.destinations.firstIndex(of: dstOrder[k - u])!
                }
                var err: Float = 0
                for k in 0..<(n - r) { for j in 0..<c {
                    err = max(err, abs(merged.tokens.data[rowOf[k] * c + j]
                                           - expected.data[(item * (n - r) + k) * c + j]))
                } }
                XCTAssertLessThan(err, 1e-5, "\(name) item \(item)")
                // Proportional attention: the sizes behind the log weights add up to the token count.
                let total = (0..<(n - r)).reduce(Float(0)) { $0 + exp(merged.logSizes.data[$1]) }
                XCTAssertEqual(total, Float(n), accuracy: 1e-3)
            }
        }
    }

    /// With saliency weighting, no foreground token is merged as a source while background sources remain.
    func testSaliencyKeepsForegroundUnmerged() {
        let (frames, h, w, c) = (2, 8, 8, 16)
        let n = frames * h * w
        let metric = Tensor.randomNormal(shape: [n, c], seed: 7)
        // Foreground: a 4×4 block in the middle of each frame.
        let saliency = (0..<n).map { i -> Float in
            let y = (i % (h * w)) / w, x = i % w
            return (2..<6).contains(y) && (2..<6).contains(x) ? 1 : 0
        }
        for seed in 0..<5 as Range<UInt64> {
            let probe = SaliencyTokenMerging.plan(metric: metric.data, channels: c, frames: frames, height: h, width: w,
                                                  r: 0, destinations: .random(seed: seed))
            let backgroundSources = probe.unmerged.filter { saliency[$0] == 0 }.count
            for r in [backgroundSources / 2, backgroundSources] {
                let plan = SaliencyTokenMerging.plan(metric: metric.data, channels: c, frames: frames, height: h,
                                                     width: w, r: r, destinations: .random(seed: seed),
                                                     saliency: saliency)
                XCTAssertEqual(plan.merged.count, r)
                XCTAssertFalse(plan.merged.contains { saliency[$0.source] > 0 },
                               "seed \(seed) r \(r): a foreground token was merged")
            }
            // Without weighting, the same r merges some foreground tokens (the weighting is what protects them).
            let plain = SaliencyTokenMerging.plan(metric: metric.data, channels: c, frames: frames, height: h, width: w,
                                                  r: backgroundSources, destinations: .random(seed: seed))
            XCTAssertTrue(plain.merged.contains { saliency[$0.source] > 0 })
        }
    }

    /// One destination per 2×2 cell of every frame, drawn afresh per frame, reproducible from the seed.
    func testRandomDestinationsPerCellAndFrame() {
        let (frames, h, w, c) = (3, 6, 8, 4)
        let metric = Tensor.randomNormal(shape: [frames * h * w, c], seed: 1)
        let a = SaliencyTokenMerging.plan(metric: metric.data, channels: c, frames: frames, height: h, width: w, r: 10,
                                          destinations: .random(seed: 42))
        let b = SaliencyTokenMerging.plan(metric: metric.data, channels: c, frames: frames, height: h, width: w, r: 10,
                                          destinations: .random(seed: 42))
        XCTAssertEqual(a.destinations, b.destinations)
        XCTAssertEqual(a.destinations.count, frames * (h / 2) * (w / 2))
        var cells = [Int: Int]()
        for d in a.destinations {
            let f = d / (h * w), y = (d % (h * w)) / w, x = d % w
            cells[f * 1000 + (y / 2) * 100 + x / 2, default: 0] += 1
        }
        XCTAssertTrue(cells.values.allSatisfy { $0 == 1 })
        let inFrame = { (f: Int) in a.destinations.filter { $0 / (h * w) == f }.map { $0 % (h * w) } }
        XCTAssertNotEqual(inFrame(0), inFrame(1), "destinations are re-drawn per frame")
    }
}
