"""Idempotent post-start bootstrap of the Stackrun lab (run by lab/up.sh with /usr/bin/python3).

Creates, when missing: the service project and users, the catalog (services and endpoints),
the demo project and user, flavors, the tiny image, unlimited compute quotas for admin and demo,
and (with a real neutron-server) an external and a private network. Raw REST over a
keystoneauth session: one process instead of dozens of `openstack` invocations.
"""
import hashlib
import os
import sys

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

CTRL = os.environ["CONTROLLER_IP"]
PASS = os.environ["LAB_PASS"]
IMAGE_FILE = os.environ["LAB_IMAGE"]
REAL_NEUTRON = os.environ.get("LAB_NEUTRON") == "real"
KS = f"http://{CTRL}:5000/v3"

ENDPOINTS = {
    # name: (type, url)
    "placement": ("placement", f"http://{CTRL}:8778"),
    "glance": ("image", f"http://{CTRL}:9292"),
    "nova": ("compute", f"http://{CTRL}:8774/v2.1"),
    "swift": ("object-store", f"http://{CTRL}:8080/v1/AUTH_%(project_id)s"),
    "neutron": ("network", f"http://{CTRL}:9696"),
    "cinderv3": ("volumev3", f"http://{CTRL}:8776/v3/%(project_id)s"),  # lib/cinder.sh
}
SERVICE_USERS = ["placement", "nova", "glance", "swift", "neutron", "cinder"]
FLAVORS = [("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20), ("m1.medium", 2, 4096, 40)]

auth = v3.Password(auth_url=KS, username="admin", password=PASS, project_name="admin",
                   user_domain_id="default", project_domain_id="default")
sess = ks_session.Session(auth=auth)


def call(method, url, body=None, ok=(200, 201, 202, 204), headers=None, **kw):
    r = sess.request(url, method, json=body, raise_exc=False, headers=headers or {}, **kw)
    if r.status_code not in ok:
        sys.exit(f"bootstrap: {method} {url} -> {r.status_code}: {r.text[:400]}")
    return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None


def find(coll, key, name, **q):
    params = "&".join([f"name={name}"] + [f"{k}={v}" for k, v in q.items()])
    items = call("GET", f"{KS}/{coll}?{params}")[key]
    return items[0] if items else None


def ensure(coll, key, name, body, **q):
    item = find(coll, key, name, **q)
    if item:
        return item
    return call("POST", f"{KS}/{coll}", {key[:-1]: dict(body, name=name)})[key[:-1]]


def ensure_role_assignment(project, user, role):
    call("PUT", f"{KS}/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")


def main():
    admin_role = find("roles", "roles", "admin")
    member_role = ensure("roles", "roles", "member", {})
    service = ensure("projects", "projects", "service", {"domain_id": "default"})
    demo = ensure("projects", "projects", "demo", {"domain_id": "default"})
    admin_project = find("projects", "projects", "admin")
    service_role = ensure("roles", "roles", "service", {})
    for name in SERVICE_USERS:
        user = ensure("users", "users", name, {"domain_id": "default", "password": PASS})
        ensure_role_assignment(service, user, admin_role)
        # Nova sends its service token along (X-Service-Token): give it the "service" role
        ensure_role_assignment(service, user, service_role)
    demo_user = ensure("users", "users", "demo", {"domain_id": "default", "password": PASS})
    ensure_role_assignment(demo, demo_user, member_role)

    for name, (stype, url) in ENDPOINTS.items():
        svc = ensure("services", "services", name, {"type": stype, "enabled": True})
        eps = call("GET", f"{KS}/endpoints?service_id={svc['id']}")["endpoints"]
        have = {e["interface"]: e for e in eps}
        for iface in ("public", "internal", "admin"):
            if iface in have:
                if have[iface]["url"] != url:
                    call("PATCH", f"{KS}/endpoints/{have[iface]['id']}", {"endpoint": {"url": url}})
                continue
            call("POST", f"{KS}/endpoints", {"endpoint": {
                "service_id": svc["id"], "interface": iface, "url": url, "region_id": "RegionOne"}})
    sess.invalidate()  # new token, new catalog

    nova = f"http://{CTRL}:8774/v2.1"
    mv = {"OpenStack-API-Version": "compute 2.60"}
    flavors = {f["name"] for f in call("GET", f"{nova}/flavors?is_public=None", headers=mv)["flavors"]}
    for name, vcpus, ram, disk in FLAVORS:
        if name not in flavors:
            call("POST", f"{nova}/flavors", {"flavor": {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk}},
                 headers=mv)
    for project in (admin_project, demo):
        call("PUT", f"{nova}/os-quota-sets/{project['id']}",
             {"quota_set": {"instances": -1, "cores": -1, "ram": -1}}, headers=mv)

    glance = f"http://{CTRL}:9292/v2"
    if not call("GET", f"{glance}/images?name=lab-tiny")["images"]:
        img = call("POST", f"{glance}/images", {"name": "lab-tiny", "disk_format": "raw",
                                                 "container_format": "bare", "visibility": "public"})
        with open(IMAGE_FILE, "rb") as f:
            data = f.read()
        call("PUT", f"{glance}/images/{img['id']}/file", ok=(204,), data=data,
             headers={"Content-Type": "application/octet-stream"})
        print(f"bootstrap: image lab-tiny {img['id']} ({len(data)} bytes, md5 {hashlib.md5(data).hexdigest()})")

    if REAL_NEUTRON:
        neutron = f"http://{CTRL}:9696/v2.0"
        nets = {n["name"]: n for n in call("GET", f"{neutron}/networks")["networks"]}
        if "public" not in nets:
            net = call("POST", f"{neutron}/networks", {"network": {
                "name": "public", "router:external": True, "provider:network_type": "flat",
                "provider:physical_network": "public", "shared": False}})["network"]
            call("POST", f"{neutron}/subnets", {"subnet": {
                "network_id": net["id"], "name": "public-subnet", "ip_version": 4,
                "cidr": "172.24.4.0/24", "gateway_ip": "172.24.4.1", "enable_dhcp": False,
                "allocation_pools": [{"start": "172.24.4.10", "end": "172.24.4.250"}]}})
        if "private" not in nets:
            net = call("POST", f"{neutron}/networks", {"network": {
                "name": "private", "project_id": demo["id"]}})["network"]
            call("POST", f"{neutron}/subnets", {"subnet": {
                "network_id": net["id"], "name": "private-subnet", "ip_version": 4,
                "cidr": "10.0.0.0/24", "project_id": demo["id"]}})
    print("bootstrap: done")


if __name__ == "__main__":
    main()
