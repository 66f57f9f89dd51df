// What an input file holds, asked before its pipeline is built: a muxer given an audio pad waits for audio that
// never comes if the file has none (or none this machine decodes), so the audio branch is added only when
// GstDiscoverer finds a stream it can decode.
import CGStreamer
import CGstPbutils
import Foundation

enum AudioInInput: Equatable {
    case none
    /// An audio stream the installed plugins decode.
    case decodable(description: String)
    /// An audio stream without a decoder here, or a file the discoverer could not read; the reason in words.
    case unusable(String)
}

enum MediaProbe {
    /// The audio of the file at `path` (GStreamer initialised). Waits at most `timeout` seconds.
    static func audio(in path: String, timeout: Double = 30) -> AudioInInput {
        gst_pb_utils_init()
        var error: UnsafeMutablePointer<GError>?
        defer { if let error { g_error_free(error) } }
        guard let uri = gst_filename_to_uri(path, &error) else { return .unusable(message(error)) }
        defer { g_free(uri) }
        guard let discoverer = gst_discoverer_new(GstClockTime(timeout * 1e9), &error) else {
            return .unusable(message(error))
        }
        defer { g_object_unref(UnsafeMutableRawPointer(discoverer)) }
        guard let info = gst_discoverer_discover_uri(discoverer, uri, &error) else { return .unusable(message(error)) }
        defer { g_object_unref(UnsafeMutableRawPointer(info)) }
        guard let streams = gst_discoverer_info_get_audio_streams(info) else { return .none }
        defer { gst_discoverer_stream_info_list_free(streams) }
        let result = gst_discoverer_info_get_result(info)
        guard result == GST_DISCOVERER_OK else {
            let what = result == GST_DISCOVERER_MISSING_PLUGINS ? "no decoder for it is installed (gstreamer1.0-libav "
                + "or gstreamer1.0-plugins-bad may have one)" : message(error)
            return .unusable(what)
        }
        let first = OpaquePointer(streams.pointee.data)
        var description = "audio"
        if let caps = gst_discoverer_stream_info_get_caps(first) {
            if let text = gst_pb_utils_get_codec_description(caps) {
                description = String(cString: text)
                g_free(text)
            }
            gst_caps_unref(caps)
        }
        return .decodable(description: description)
    }

    private static func message(_ error: UnsafeMutablePointer<GError>?) -> String {
        error.map { String(cString: $0.pointee.message) } ?? "unknown error"
    }
}
