#!/usr/bin/env bash
# Install Debian's RabbitMQ (with its MQTT plugin) for the opt-in broker-cluster
# run (bench/bench_city_cluster.py --run). Never part of `make setup`: Mosquitto
# stays the broker of `make sim` and the tests. The packaged service is
# stopped and disabled: the bench starts its own nodes on loopback.
set -eu
. "$(dirname "${BASH_SOURCE[0]}")/ensure_lib.sh"
if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then exit 0; fi
if can_apt; then
    apt_install "broker-cluster bench only" rabbitmq-server
    (systemctl stop rabbitmq-server && systemctl disable rabbitmq-server) >/dev/null 2>&1 || \
        service rabbitmq-server stop >/dev/null 2>&1 || true
    exit 0
fi
echo "setup: rabbitmq-server missing and not root. Install with: sudo apt-get install rabbitmq-server" >&2
exit 1
