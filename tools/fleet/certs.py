"""Per-device TLS client certificates signed by the fleet CA, and their CRL.

Used with `provision.py --client-certs`: the broker listener then says
`require_certificate true` + `use_identity_as_username true`, so the
certificate's CN (the device id) is the user the ACL knows, and a stolen
board is cut off by revoking its certificate (`crlfile`). The CA database
(index, serials, CRL number) lives in <out>/broker/ca-db/.
"""

import os
import subprocess

from fleet.broker import FleetError, tool

_CNF = """[ca]
default_ca = fleet
[fleet]
dir = %(db)s
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = %(ca)s/ca.crt
private_key = %(ca)s/ca.key
default_md = sha256
default_crl_days = 3650
policy = anything
[anything]
commonName = supplied
"""


class Certs:
    def __init__(self, broker_dir, root):
        self.dir = broker_dir
        self.db = os.path.join(broker_dir, "ca-db")
        self.openssl = tool("openssl", root) or "openssl"
        os.makedirs(self.db, exist_ok=True)
        self.cnf = os.path.join(self.db, "openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CNF % {"db": self.db, "ca": broker_dir})
        for name, text in (("index.txt", ""), ("crlnumber", "01\n")):
            path = os.path.join(self.db, name)
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(text)

    def _run(self, *args):
        proc = subprocess.run([self.openssl] + list(args), capture_output=True, text=True)
        if proc.returncode != 0:
            raise FleetError("openssl %s failed: %s" % (args[0], (proc.stderr.strip().splitlines() or ["?"])[-1]))
        return proc.stdout

    def issue(self, cn, crt, key):
        """A client certificate for `cn` (kept when it already exists and is not revoked)."""
        if os.path.exists(crt) and os.path.exists(key):
            return False
        csr = crt + ".csr"
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        self._run("x509", "-req", "-in", csr, "-CA", os.path.join(self.dir, "ca.crt"),
                  "-CAkey", os.path.join(self.dir, "ca.key"), "-CAserial", os.path.join(self.db, "serial"),
                  "-CAcreateserial", "-out", crt, "-days", "825")
        os.unlink(csr)
        os.chmod(key, 0o600)
        # MicroPython's mbedTLS loads DER: the board gets both forms.
        self._run("x509", "-in", crt, "-outform", "DER", "-out", crt + ".der")
        self._run("pkey", "-in", key, "-outform", "DER", "-out", key + ".der")
        os.chmod(key + ".der", 0o600)
        return True

    def accounts(self, names):
        for name in names:
            self.issue(name, os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key"))

    def revoke(self, crt):
        self._run("ca", "-config", self.cnf, "-revoke", crt)

    def crl(self):
        self._run("ca", "-config", self.cnf, "-gencrl", "-out", os.path.join(self.dir, "crl.pem"))
