"""The naive failover the failover benchmark compares against: the third-party `cs` client
(HMAC-SHA1) as a plain sequential script on the DR site — Mold's forced promote, then each
mirrored VM started and waited for, one after the other, as the UI does.

    python baseline_cs.py ENDPOINT API_KEY SECRET_KEY
"""
import sys

from cs import CloudStack

endpoint, key, secret = sys.argv[1:4]
dr = CloudStack(endpoint=endpoint, key=key, secret=secret, fetch_result=True, poll_interval=0.2)
record = dr.getDisasterRecoveryClusterList()["disasterrecoverycluster"][0]
dr.promoteDisasterRecoveryCluster(id=record["id"])
mirrored = {row["drclustervmid"] for row in record["drclustervmmap"]}
for vm in dr.listVirtualMachines(listall="true")["virtualmachine"]:
    if vm["id"] in mirrored and vm["state"] != "Running":
        dr.startVirtualMachine(id=vm["id"], considerlasthost="true")
