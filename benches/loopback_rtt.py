#!/usr/bin/env python3
"""The loopback floor of any client protocol on this machine: a 180 B TCP ping-pong (TCP_NODELAY)
between two processes, 20,000 round trips, p50 and p99. No TLS, no HTTP, no parsing: what a
request and its answer cost in the kernel and in waking the other process. Run it on a quiet
machine: `python3 benches/loopback_rtt.py`."""
import socket, os, time, statistics
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1); port=s.getsockname()[1]
if os.fork()==0:
    c,_=s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d=c.recv(256)
        if not d: os._exit(0)
        c.sendall(d)
c=socket.create_connection(("127.0.0.1",port)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg=b"x"*180; lat=[]
for i in range(20000):
    t=time.perf_counter_ns(); c.sendall(msg); n=0
    while n<len(msg): n+=len(c.recv(256))
    lat.append((time.perf_counter_ns()-t)/1000)
c.close(); lat.sort()
print(f"tcp ping-pong 180 B between two processes: p50 {lat[len(lat)//2]:.1f} us p99 {lat[len(lat)*99//100]:.1f} us")
