"""Private RabbitMQ nodes on loopback for the opt-in cluster bench (Debian's rabbitmq-server).

Each node gets its own folder (database, logs, config, enabled plugins:
rabbitmq_mqtt), its own AMQP, MQTT and distribution ports and a shared
Erlang cookie, and is started in the foreground under its own node name so
the bench can SIGKILL it like a crashed machine. `cluster()` joins the
second node to the first and mirrors the MQTT session queues to every node
(classic mirrored queues, the 3.10 way), so the bridge's persistent session
survives the death of the node it lives on.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

BIN = "/usr/lib/rabbitmq/bin"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Node:
    def __init__(self, workdir, name, host=None):
        self.host_name = host or socket.gethostname().split(".")[0]
        self.name = "%s@%s" % (name, self.host_name)
        self.dir = os.path.join(workdir, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.home = workdir  # the shared Erlang cookie lives in $HOME
        cookie = os.path.join(workdir, ".erlang.cookie")
        if not os.path.exists(cookie):
            with open(cookie, "w") as f:
                f.write("PHSCITYBENCHCOOKIE")
            os.chmod(cookie, 0o400)
        self.amqp, self.mqtt = _free_port(), _free_port()
        self.dist = _free_port()
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\nmqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                    "mqtt.allow_anonymous = true\nloopback_users = none\nmqtt.vhost = /\n"
                    "mqtt.exchange = amq.topic\nmqtt.subscription_ttl = 86400000\n"
                    "cluster_partition_handling = ignore\n" % (self.amqp, self.mqtt))
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        self.proc = None

    def env(self):
        e = dict(os.environ, HOME=self.home, RABBITMQ_NODENAME=self.name,
                 RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq.conf"),
                 RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                 RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"), RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                 RABBITMQ_PID_FILE=os.path.join(self.dir, "pid"), RABBITMQ_NODE_PORT=str(self.amqp),
                 RABBITMQ_DIST_PORT=str(self.dist), RABBITMQ_NODE_IP_ADDRESS="127.0.0.1")
        e.pop("RABBITMQ_CONFIG_FILES", None)
        return e

    def ctl(self, *args, timeout=120):
        r = subprocess.run([os.path.join(BIN, "rabbitmqctl"), "-n", self.name] + list(args), env=self.env(),
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError("rabbitmqctl %s: %s %s" % (" ".join(args), r.stdout[-500:], r.stderr[-800:]))
        return r.stdout

    def start(self):
        self.log = open(os.path.join(self.dir, "console.log"), "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "rabbitmq-server")], env=self.env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        end = time.time() + 180  # await_startup fails at once until the VM has registered with epmd
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited at start (see %s)" % (self.name, self.dir))
            try:
                self.ctl("await_startup", "--timeout", "60", timeout=90)
                return self
            except RuntimeError:
                if time.time() > end:
                    raise
                time.sleep(1)

    def wait_port(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt), 0.5).close()
                return True
            except OSError:
                time.sleep(0.2)
        return False

    def kill(self):
        """SIGKILL the whole node (the Erlang VM and its helpers): a crashed machine."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self.kill()


def cluster(a, b):
    """Join b to a; mirror every MQTT session queue on all nodes."""
    b.ctl("stop_app")
    b.ctl("join_cluster", a.name)
    b.ctl("start_app")
    a.ctl("set_policy", "mqtt-ha", "^mqtt-subscription-", '{"ha-mode":"all","ha-sync-mode":"automatic"}',
          "--apply-to", "queues")
    return a.ctl("cluster_status")
