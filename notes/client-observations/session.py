import requests, sys, threading, logging
from concurrent.futures import ThreadPoolExecutor
n_threads, n_req = int(sys.argv[1]), int(sys.argv[2])
full = 0
class Count(logging.Handler):
    def emit(self, rec):
        global full
        if "Connection pool is full" in rec.getMessage():
            full += 1
logging.getLogger("urllib3.connectionpool").addHandler(Count())
count = lambda: int(requests.get("http://127.0.0.1:8080/count").text)
before = count()
s = requests.Session()
def one(_):
    s.get("http://127.0.0.1:8080/").content
with ThreadPoolExecutor(n_threads) as ex:
    list(ex.map(one, range(n_req)))
opened = count() - before - 1  # each count request is a connection of its own
s.close()
print(f"threads {n_threads} requests {n_req}: {opened} connections opened by the Session; 'Connection pool is full, discarding connection' {full} times")
