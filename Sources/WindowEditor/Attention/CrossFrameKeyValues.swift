// Cross-frame attention: which frames' keys/values each frame's self-attention sees.
import StableDiffusion
import TensorKernels

/// For a batch of `halves` × `frames` items (half-major; each half attends within itself).
struct CrossFrameKeyValues {
    let policy: CrossFrameAttention
    let frames: Int, halves: Int

    init(_ policy: CrossFrameAttention, frames: Int, halves: Int) {
        (self.policy, self.frames, self.halves) = (policy, frames, halves)
    }

    init(_ policy: CrossFrameAttention, for call: UNetCall) {
        self.init(policy, frames: call.frames, halves: call.halves)
    }

    /// Frames whose keys/values frame `i` attends to (always including itself), without repeats.
    func attendedFrames(_ i: Int) -> [Int] {
        var list: [Int]
        switch policy {
        case .none: list = [i]
        case .firstPrevious: list = [0, max(i - 1, 0), i]
        case .firstPreviousMiddle: list = [0, max(i - 1, 0), frames / 2, i]
        case .all: list = Array(0..<frames)
        }
        var seen = Set<Int>()
        return list.filter { seen.insert($0).inserted }
    }

    /// One key/value group per item (its own tokens), each item attending to its attended frames in its half; nil
    /// when every frame attends to itself only (plain self-attention).
    func keyValues(_ x: Tensor) -> KeyValueGroups? {
        policy == .none ? nil : groups(x)
    }

    /// Per item, the items whose keys/values it attends to (its attended frames in its half); nil when every frame
    /// attends to itself only. What the gradient's self-attention takes (`crossAttentionGradient`).
    var itemGroups: [[Int]]? {
        policy == .none ? nil : allItemGroups
    }

    /// One group per item, each item attending to its own only: plain self-attention as groups.
    func ownFrames(_ x: Tensor) -> KeyValueGroups {
        CrossFrameKeyValues(.none, frames: frames, halves: halves).groups(x)
    }

    private var allItemGroups: [[Int]] {
        (0..<halves).flatMap { half in (0..<frames).map { attendedFrames($0).map { half * frames + $0 } } }
    }

    private func groups(_ x: Tensor) -> KeyValueGroups {
        let tokens = (0..<(halves * frames)).map { x.slice(first: $0, length: 1) }
        return KeyValueGroups(tokens: tokens, logWeights: tokens.map { _ in nil }, itemGroups: allItemGroups)
    }
}
