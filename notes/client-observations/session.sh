# Sets sysctls: only in a private network namespace (`unshare -n bash THIS`), never the host's.
if [ "$(grep -c ':' /proc/net/dev)" != 1 ]; then
  echo "run me as: unshare -n bash $0 (a fresh network namespace has only lo)" >&2; exit 2
fi
cd "$(dirname "$0")"
ip link set lo up
sysctl -qw net.ipv4.tcp_tw_reuse=0
python3 server.py & S=$!
sleep 0.5
tw() { ss -Htan state time-wait | awk '{split($3,a,":"); if (a[2]!=8080) c++; else v++} END{print c+0, v+0}'; }
for t in 1 10 32; do
  set -- $(tw); c0=$1; s0=$2
  python3 session.py $t 300
  set -- $(tw)
  echo "  TIME-WAIT added: client $(( $1 - c0 - 2 )) (less the 2 count requests'), server $(( $2 - s0 ))"
done
kill $S
