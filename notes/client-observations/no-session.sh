set -e
# Sets sysctls: only in a private network namespace (`unshare -n bash THIS`), never the host's.
if [ "$(grep -c ':' /proc/net/dev)" != 1 ]; then
  echo "run me as: unshare -n bash $0 (a fresh network namespace has only lo)" >&2; exit 2
fi
cd "$(dirname "$0")"
ip link set lo up
sysctl -qw net.ipv4.tcp_tw_reuse=0
sysctl -qw net.ipv4.ip_local_port_range="40000 40999"
python3 server.py & S=$!
sleep 0.5
python3 nosession.py
echo "TIME-WAIT client side (local port in 40000-40999):" $(ss -Htan state time-wait | awk '{split($3,a,":"); if (a[2]>=40000 && a[2]<=40999) n++} END{print n+0}')
echo "TIME-WAIT server side (local port 8080):" $(ss -Htan state time-wait '( sport = :8080 )' | wc -l)
kill $S
