import http.server, socketserver, sys, threading
accepted = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        global accepted
        with lock:
            accepted += 1
        super().setup()
    def do_GET(self):
        if self.path == "/count":
            body = str(accepted).encode()
        else:
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024
S(("127.0.0.1", 8080), H).serve_forever()
