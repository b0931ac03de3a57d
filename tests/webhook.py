"""A real webhook receiver on loopback for the notification tests (`from webhook import Hook, dead_port`)."""
import http.server
import json
import socket
import threading


class Hook:
    "A webhook receiver on loopback (a chosen port, or a free one): keeps every JSON body POSTed to it in `bodies`."
    def __init__(self, port: int = 0):
        self.bodies = []
        hook = self
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass
        self.server = http.server.HTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self): self.server.shutdown(); self.server.server_close()


def dead_port() -> int:
    "A loopback port nothing listens on (a sink that is down), free for a `Hook` to take later."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
