import WindowEditor
import CGStreamer
import CGstShim
