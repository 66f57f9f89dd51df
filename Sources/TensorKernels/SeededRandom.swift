import Foundation

/// A small, fast, reproducible generator (SplitMix64) with raw and standard-normal draws.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float(sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2))
    }
}

extension Tensor {
    /// Standard-normal values × `std`, reproducible for a seed (filled in parallel chunks, each with its own stream).
    public static func randomNormal(shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
        let t = Tensor(shape: shape)
        let chunk = 1 << 16
        let chunks = (t.count + chunk - 1) / chunk
        let p = t.data
        Parallel.forEach(chunks) { c in
            var rng = SeededRandom(seed: seed &* 1_000_003 &+ UInt64(c))
            for i in (c * chunk)..<min(t.count, (c + 1) * chunk) { p[i] = rng.normal() * std }
        }
        return t
    }
}
