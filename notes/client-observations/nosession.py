import requests, sys, time, errno
t0 = time.time()
for i in range(1, 3001):
    try:
        requests.get("http://127.0.0.1:8080/")
    except requests.exceptions.ConnectionError as e:
        print(f"first failure at request {i} after {time.time()-t0:.2f} s: {e!r}"[:300])
        break
else:
    print("no failure in 3000")
