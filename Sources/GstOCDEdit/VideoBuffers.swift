// Copies between GstBuffers (rows padded to their stride) and the editor's tightly packed `Frame`/`Mask`.
import CGStreamer
import CGstShim
import WindowEditor

/// A GstBuffer reference that may cross to the worker thread (the element owns one ref).
final class BufferRef: @unchecked Sendable {
    let buffer: UnsafeMutablePointer<GstBuffer>
    init(owning buffer: UnsafeMutablePointer<GstBuffer>) { self.buffer = buffer }
    deinit { gst_buffer_unref(buffer) }
    var pts: GstClockTime { buffer.pointee.pts }
}

struct VideoLayout: @unchecked Sendable {
    var info: GstVideoInfo
    var format: PixelFormat

    /// Video caps of the sink pad (RGB, RGBA, BGRx, I420), or with `mask: true` the GRAY8 caps of the mask pad.
    init?(caps: UnsafeMutablePointer<GstCaps>, mask: Bool = false) {
        var info = GstVideoInfo()
        guard gst_video_info_from_caps(&info, caps) != 0 else { return nil }
        self.info = info
        let f = ocd_video_info_format(&info)
        if mask {
            guard f == GST_VIDEO_FORMAT_GRAY8 else { return nil }
            format = .rgb // unused for masks: they are read with readMask
            return
        }
        switch f {
        case GST_VIDEO_FORMAT_RGB: format = .rgb
        case GST_VIDEO_FORMAT_RGBA: format = .rgba
        case GST_VIDEO_FORMAT_BGRx: format = .bgrx
        case GST_VIDEO_FORMAT_I420: format = .i420
        default: return nil
        }
    }

    var width: Int { Int(info.width) }
    var height: Int { Int(info.height) }

    /// Bytes per row and rows of each plane of `format` (no padding).
    var planeShapes: [(rowBytes: Int, rows: Int)] {
        switch format {
        case .rgb: return [(width * 3, height)]
        case .rgba, .bgrx: return [(width * 4, height)]
        case .i420:
            let c = ((width + 1) / 2, (height + 1) / 2)
            return [(width, height), c, c]
        }
    }

    func readFrame(_ buffer: UnsafeMutablePointer<GstBuffer>) -> Frame? {
        var vf = GstVideoFrame()
        var info = self.info
        guard gst_video_frame_map(&vf, &info, buffer, GST_MAP_READ) != 0 else { return nil }
        defer { gst_video_frame_unmap(&vf) }
        let planes = planeShapes.enumerated().map { (i, shape) -> [UInt8] in
            let src = ocd_video_frame_plane_data(&vf, guint(i))!
            let stride = Int(ocd_video_frame_plane_stride(&vf, guint(i)))
            var plane = [UInt8](repeating: 0, count: shape.rowBytes * shape.rows)
            plane.withUnsafeMutableBytes { dst in
                for row in 0..<shape.rows {
                    (dst.baseAddress! + row * shape.rowBytes).copyMemory(from: src + row * stride,
                                                                         byteCount: shape.rowBytes)
                }
            }
            return plane
        }
        return Frame(format: format, width: width, height: height, planes: planes)
    }

    /// A deep copy of `original` (timestamps, duration, flags and metas kept) carrying `frame`'s pixels.
    func writeFrame(_ frame: Frame,
                    like original: UnsafeMutablePointer<GstBuffer>) -> UnsafeMutablePointer<GstBuffer>? {
        guard let out = ocd_buffer_copy_deep(original) else { return nil }
        var vf = GstVideoFrame()
        var info = self.info
        guard gst_video_frame_map(&vf, &info, out, GST_MAP_WRITE) != 0 else { gst_buffer_unref(out); return nil }
        for (i, shape) in planeShapes.enumerated() {
            let dst = ocd_video_frame_plane_data(&vf, guint(i))!
            let stride = Int(ocd_video_frame_plane_stride(&vf, guint(i)))
            frame.planes[i].withUnsafeBytes { src in
                for row in 0..<shape.rows {
                    UnsafeMutableRawPointer(dst + row * stride)
                        .copyMemory(from: src.baseAddress! + row * shape.rowBytes, byteCount: shape.rowBytes)
                }
            }
        }
        gst_video_frame_unmap(&vf)
        return out
    }

    func readMask(_ buffer: UnsafeMutablePointer<GstBuffer>) -> Mask? {
        var vf = GstVideoFrame()
        var info = self.info
        guard gst_video_frame_map(&vf, &info, buffer, GST_MAP_READ) != 0 else { return nil }
        defer { gst_video_frame_unmap(&vf) }
        let src = ocd_video_frame_plane_data(&vf, 0)!
        let stride = Int(ocd_video_frame_plane_stride(&vf, 0))
        var pixels = [UInt8](repeating: 0, count: width * height)
        pixels.withUnsafeMutableBytes { dst in
            for row in 0..<height {
                (dst.baseAddress! + row * width).copyMemory(from: src + row * stride, byteCount: width)
            }
        }
        return Mask(width: width, height: height, pixels: pixels)
    }
}
