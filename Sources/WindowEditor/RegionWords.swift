// mode=reatco's layout: which words of the target prompt go where. Per frame a label map (input-frame size) whose
// value v marks the v-th word's region and 0 no region: the `mask` stream itself with `region-words`, or drawn from
// the boxes of `regions`. The rest of the editor (edit region, composite) sees the union of the regions as the mask.
import Foundation
import StableDiffusion

public struct RegionWords: Sendable, Equatable {
    /// A box in input pixels, x1 and y1 exclusive.
    public struct Box: Sendable, Equatable {
        public var x0: Int, y0: Int, x1: Int, y1: Int
    }

    /// The words or phrases, in label order (label v = words[v − 1]).
    public let words: [String]
    /// With `regions`: one box per word; nil: the label maps come from the mask stream.
    public let boxes: [Box]?

    /// The layout `settings` ask for (mode=reatco), or nil for other modes. Throws a one-line error for a malformed
    /// `regions`, for neither or both of `region-words` and `regions`, and for more words than a mask has values.
    public init?(_ settings: EditorSettings) throws {
        guard settings.mode == .reatco else { return nil }
        let listed = settings.regionWords.trimmingCharacters(in: .whitespaces).isEmpty ? [] : settings.regionWords
            .split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let entries = settings.regions.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        switch (listed.isEmpty, entries.isEmpty) {
        case (true, true):
            throw WindowEditError("mode=reatco needs region-words (with a label map on the mask pad) or regions "
                                  + "(boxes, 'word:x1,y1,x2,y2;...'): which words go where")
        case (false, false):
            throw WindowEditError("mode=reatco takes region-words (a label map on the mask pad) or regions (boxes), "
                                  + "not both")
        case (false, true):
            guard !listed.contains(where: \.isEmpty) else {
                throw WindowEditError("region-words '\(settings.regionWords)' has an empty word")
            }
            guard listed.count <= 255 else { throw WindowEditError("region-words: at most 255 words (mask values)") }
            (words, boxes) = (listed, nil)
        case (true, false):
            var words: [String] = [], boxes: [Box] = []
            for entry in entries {
                let parts = entry.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                let numbers = parts.count == 2 ? parts[1].split(separator: ",").map {
                    Int($0.trimmingCharacters(in: .whitespaces))
                } : []
                guard parts.count == 2, !parts[0].isEmpty, numbers.count == 4, numbers.allSatisfy({ $0 != nil }) else {
                    throw WindowEditError("regions: '\(entry)' is not 'word:x1,y1,x2,y2' (pixels of the input frame)")
                }
                let n = numbers.map { $0! }
                guard n[0] >= 0, n[1] >= 0, n[2] > n[0], n[3] > n[1] else {
                    throw WindowEditError("regions: '\(entry)' is not a box (0 ≤ x1 < x2, 0 ≤ y1 < y2)")
                }
                words.append(parts[0])
                boxes.append(Box(x0: n[0], y0: n[1], x1: n[2], y1: n[3]))
            }
            guard words.count <= 255 else { throw WindowEditError("regions: at most 255 boxes") }
            (self.words, self.boxes) = (words, boxes)
        }
    }

    /// Per word, the positions of its tokens in the target prompt's 77-token context (the start token is 0), found
    /// by tokenizing the word alone; throws when a word is not in the prompt.
    public func tokenPositions(prompt: String, tokenizer: CLIPTokenizer) throws -> [[Int]] {
        let promptTokens = tokenizer.encode(prompt)
        return try words.map { word in
            let wordTokens = tokenizer.encode(word)
            let n = wordTokens.count
            guard n > 0, n <= promptTokens.count,
                  let start = (0...(promptTokens.count - n)).first(where: {
                      Array(promptTokens[$0..<($0 + n)]) == wordTokens
                  }) else {
                throw WindowEditError("region word '\(word)' is not in the prompt '\(prompt)'")
            }
            guard start + n <= 75 else {
                throw WindowEditError("region word '\(word)' lies past the prompt's 75th token")
            }
            return Array((start + 1)...(start + n))
        }
    }

    /// The frame's label map: `mask` itself (region-words), or the boxes drawn at `width`×`height` (a later box over
    /// an earlier one).
    public func labels(_ mask: Mask, width: Int, height: Int) -> Mask {
        guard let boxes else { return mask.scaled(width: width, height: height) }
        var pixels = [UInt8](repeating: 0, count: width * height)
        for (v, b) in boxes.enumerated() {
            for y in min(b.y0, height)..<min(b.y1, height) {
                for x in min(b.x0, width)..<min(b.x1, width) { pixels[y * width + x] = UInt8(v + 1) }
            }
        }
        return Mask(width: width, height: height, pixels: pixels)
    }

    /// The union of the regions as a 0/255 mask (what the edit region and the composite follow).
    public func union(_ labels: Mask) -> Mask { Self.union(labels, words: words.count) }

    /// The union of the regions of a label map of `words` words (values 1…words) as a 0/255 mask.
    public static func union(_ labels: Mask, words: Int) -> Mask {
        Mask(width: labels.width, height: labels.height,
             pixels: labels.pixels.map { $0 >= 1 && Int($0) <= words ? 255 : 0 })
    }

    /// Why a window's label maps (with region-words) cannot be read as labels, or nil: pixels set but none of them a
    /// word's value (a 0/255 mask, or the mask pad unlinked).
    public func refusal(_ labels: [Mask]) -> String? {
        guard boxes == nil else { return nil }
        let n = words.count
        var anySet = false
        for m in labels {
            for p in m.pixels where p != 0 {
                if Int(p) <= n { return nil }
                anySet = true
            }
        }
        guard anySet else { return nil }
        return "mode=reatco with region-words reads the mask as a label map (value v = the v-th of \(n) word(s), "
            + "0 = none); this window's masks have no pixel of value 1…\(n) (a 0/255 mask, or the mask pad unlinked?)"
    }

    /// Per word, per frame: its region on an `h`×`w` grid (1 inside, 0 outside). A cell is in word v's region when at
    /// least half of its pixels carry v; a word with pixels in a frame but no such cell gets the cell holding most
    /// of them (a small object keeps a region on a coarse grid).
    public static func grid(_ labels: [Mask], words: Int, height h: Int, width w: Int) -> [[[Float]]] {
        var out = [[[Float]]](repeating: [], count: words)
        for m in labels {
            var counts = [[Int]](repeating: [Int](repeating: 0, count: h * w), count: words)
            var cellPixels = [Int](repeating: 0, count: h * w)
            for y in 0..<m.height {
                let row = min(h - 1, y * h / m.height) * w
                for x in 0..<m.width {
                    let cell = row + min(w - 1, x * w / m.width)
                    cellPixels[cell] += 1
                    let v = Int(m.pixels[y * m.width + x])
                    if v >= 1 && v <= words { counts[v - 1][cell] += 1 }
                }
            }
            for j in 0..<words {
                var region = (0..<(h * w)).map { Float(2 * counts[j][$0] >= max(1, cellPixels[$0]) ? 1 : 0) }
                if !region.contains(1), let best = counts[j].indices.max(by: { counts[j][$0] < counts[j][$1] }),
                   counts[j][best] > 0 {
                    region[best] = 1
                }
                out[j].append(region)
            }
        }
        return out
    }
}
