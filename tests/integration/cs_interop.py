"""Drives the simulator with the third-party `cs` client (HMAC-SHA1, camel-case apiKey,
signatureVersion=3): prints one JSON document of what it saw, for cs_interop.rs to check."""
import json
import sys

from cs import CloudStack, CloudStackApiException

endpoint_a, key_a, secret_a, endpoint_b, key_b, secret_b = sys.argv[1:7]
a = CloudStack(endpoint=endpoint_a, key=key_a, secret=secret_a, fetch_result=True, poll_interval=0.05)
b = CloudStack(endpoint=endpoint_b, key=key_b, secret=secret_b, method="post")
out = {}
out["a_clusters"] = a.getDisasterRecoveryClusterList()
out["b_clusters"] = b.getDisasterRecoveryClusterList(drclustertype="primary")
vms = a.listVirtualMachines(name="dr-centos-1")["virtualmachine"]
out["vms"] = a.listVirtualMachines()
vm = vms[0]["id"]
out["stopped"] = a.stopVirtualMachine(id=vm, forced="true")
out["started"] = a.startVirtualMachine(id=vm, considerlasthost="true")
# A space is encoded alike by cs and Java (%20). `~` is not: cs leaves it raw where
# Java writes %7E, so real Mold (and this simulator) reject such a signature.
out["keyword"] = a.listVirtualMachines(keyword="centos 1 ")
try:
    CloudStack(endpoint=endpoint_a, key=key_a, secret="not-the-secret").listVirtualMachines()
    out["bad_signature"] = None
except CloudStackApiException as e:
    out["bad_signature"] = {"status": e.response.status_code, "error": e.error}
print(json.dumps(out))
