// Masks arrive at any size; the editor wants them at the frame's size.

extension Mask {
    /// Nearest-neighbour resample to `width`×`height` (pixel centres map to pixel centres).
    public func scaled(width: Int, height: Int) -> Mask {
        if width == self.width && height == self.height { return self }
        var out = [UInt8](repeating: 0, count: width * height)
        let sx = Double(self.width) / Double(width), sy = Double(self.height) / Double(height)
        let columns = (0..<width).map { min(self.width - 1, Int((Double($0) + 0.5) * sx)) }
        for y in 0..<height {
            let srcRow = min(self.height - 1, Int((Double(y) + 0.5) * sy)) * self.width
            for x in 0..<width { out[y * width + x] = pixels[srcRow + columns[x]] }
        }
        return Mask(width: width, height: height, pixels: out)
    }

    /// Share of pixels at or above `threshold`.
    public func coverage(threshold: Int) -> Double {
        guard !pixels.isEmpty else { return 0 }
        return Double(pixels.reduce(0) { $0 + (Int($1) >= threshold ? 1 : 0) }) / Double(pixels.count)
    }
}
