"""A private Mosquitto on a free loopback port (used by `make sim` and the tests).

Each Broker writes its own configuration (anonymous; password file + ACL;
TLS with certificates made at test time), starts `mosquitto -c`, waits until
the port accepts, and can be stopped, killed, frozen (SIGSTOP), thawed,
told to save its persistence database (SIGUSR1) and restarted on the same
port for fault tests.
"""

import os
import signal
import socket
import subprocess
import time


def _tool(name):
    import shutil
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", name)
    if os.path.exists(here):
        return here
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _user_name():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def _run(cmd, **kw):
    subprocess.run(cmd, check=True, capture_output=True, **kw)


class TlsMaterial:
    """A CA, a server certificate for localhost/127.0.0.1, and an unrelated CA."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        p = lambda n: os.path.join(folder, n)  # noqa: E731
        self.ca_key, self.ca_cert = p("ca.key"), p("ca.crt")
        self.server_key, self.server_cert = p("server.key"), p("server.crt")
        self.wrong_ca_key, self.wrong_ca_cert = p("wrong-ca.key"), p("wrong-ca.crt")
        self._make()

    def _make(self):
        ossl = _tool("openssl") or "openssl"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for key, cert, cn in ((self.ca_key, self.ca_cert, "Phitsanulok Transit Test CA"),
                              (self.wrong_ca_key, self.wrong_ca_cert, "Somebody Else CA")):
            _run([ossl, "req", "-x509", *ec, "-keyout", key, "-out", cert, "-days", "30",
                  "-subj", "/CN=" + cn])
        csr = os.path.join(self.folder, "server.csr")
        ext = os.path.join(self.folder, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _run([ossl, "req", *ec, "-keyout", self.server_key, "-out", csr, "-subj", "/CN=localhost"])
        _run([ossl, "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
              "-CAcreateserial", "-out", self.server_cert, "-days", "30", "-extfile", ext])
        # MicroPython's mbedTLS build loads CA certificates as DER, not PEM.
        self.ca_der = os.path.join(self.folder, "ca.der")
        self.wrong_ca_der = os.path.join(self.folder, "wrong-ca.der")
        for pem, der in ((self.ca_cert, self.ca_der), (self.wrong_ca_cert, self.wrong_ca_der)):
            _run([ossl, "x509", "-in", pem, "-outform", "DER", "-out", der])

    def ca_pem(self):
        with open(self.ca_cert, "rb") as f:
            return f.read()


class Broker:
    def __init__(self, workdir, users=None, acl=None, tls=None, anonymous=None, port=None, persistence=False):
        self.binary = _tool("mosquitto")
        if not self.binary:
            raise RuntimeError("mosquitto is not installed: run `make setup` (or apt-get install mosquitto)")
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.users = dict(users or {})
        self.acl = acl
        self.tls = tls
        self.persistence = persistence  # keep sessions and queued messages across a restart
        self.anonymous = (not self.users) if anonymous is None else anonymous
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(workdir, "mosquitto.log")
        self.conf_path = os.path.join(workdir, "mosquitto.conf")
        self._write_config()

    def _write_config(self):
        # As root, mosquitto would drop to user "mosquitto" and lose access to
        # the test folder; keep the invoking user (ignored when not root).
        lines = ["user " + _user_name(), "per_listener_settings false", "persistence " + ("true" if self.persistence else "false"),
                 "persistence_location " + self.workdir + "/",
                 "log_dest file " + self.log_path, "log_type all", "connection_messages true",
                 "listener %d %s" % (self.port, self.host),
                 "allow_anonymous " + ("true" if self.anonymous else "false")]
        if self.users:
            pw = os.path.join(self.workdir, "passwd")
            open(pw, "w").close()
            for user, password in self.users.items():
                _run([_tool("mosquitto_passwd") or "mosquitto_passwd", "-b", pw, user, password])
            lines.append("password_file " + pw)
        if self.acl is not None:
            acl = os.path.join(self.workdir, "acl")
            with open(acl, "w") as f:
                f.write(self.acl)
            lines.append("acl_file " + acl)
        if self.tls is not None:
            lines += ["cafile " + self.tls.ca_cert, "certfile " + self.tls.server_cert,
                      "keyfile " + self.tls.server_key, "require_certificate false"]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- life cycle ---------------------------------------------------
    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited at start: %s\n%s" % (self.proc.stderr.read().decode(), self.log()))
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not open port %d in %.0f s\n%s" % (self.port, timeout, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def freeze(self):
        """SIGSTOP: the port stays open, nothing answers (a hung broker or dead link)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def save(self, timeout=5.0):
        """SIGUSR1: write the persistence database now (mosquitto(8)); True
        once the file has changed. A broker later killed with SIGKILL comes
        back from this file, so sessions made before it survive. Without
        persistence there is nothing to save (True)."""
        if not self.persistence:
            return True
        path = os.path.join(self.workdir, "mosquitto.db")

        def stamp():
            try:
                st = os.stat(path)
                return (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                return None
        before = stamp()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = stamp()
            if now is not None and now != before:
                return True
            time.sleep(0.01)
        return False

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""


