"""After the fuzzer (scripts/fuzz.sh): once the pipeline is at rest, every unit of the sale is
accounted for. A unit reserved by a request that got no order would show as a unit Redis holds
that no order in the database holds. Usage: fuzz_check.py [--create] <gateway url> <admin token>
<sku> (--create: put the sale on sale first, 100,000 units at 199.99 EUR, open for an hour)."""

import datetime
import json
import sys
import time
import urllib.request


def sale(gateway, admin, sku):
    request = urllib.request.Request(
        f"{gateway}/v1/admin/sales/{sku}", headers={"Authorization": f"Bearer {admin}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def create(gateway, admin, sku):
    now = datetime.datetime.now(datetime.timezone.utc)
    body = json.dumps(
        {
            "stock": 100_000,
            "per_user_limit": 1000,
            "starts_at": (now - datetime.timedelta(minutes=1)).isoformat(),
            "ends_at": (now + datetime.timedelta(hours=1)).isoformat(),
            "payment_window_secs": 900,
            "price_minor": 19_999,
            "currency": "EUR",
        }
    ).encode()
    request = urllib.request.Request(
        f"{gateway}/v1/admin/sales/{sku}",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def gaps(view):
    db, redis = view["database"], view["redis"]
    held = db["awaiting_payment"]["units"] + db["paid"]["units"]
    return {
        "Redis remaining + held - initial": redis["remaining"] + held - db["initial_stock"],
        "Redis reserved - released - held": redis["reserved"] - redis["released"] - held,
        "database initial - stock - held": db["initial_stock"] - db["stock"] - held,
        "reservations not yet written or released": redis["unfinished"],
    }


def main():
    if sys.argv[1] == "--create":
        create(*sys.argv[2:5])
        return
    gateway, admin, sku = sys.argv[1:4]
    deadline = time.monotonic() + 60
    while True:
        view = sale(gateway, admin, sku)
        found = gaps(view)
        if not any(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    db = view["database"]
    print(
        f"[fuzz] {sku}: {view['redis']['reserved']} units reserved, "
        f"{db['awaiting_payment']['units'] + db['paid']['units']} held by orders, "
        f"{view['redis']['released']} released, {db['failed']['orders']} failed orders"
    )
    broken = {name: gap for name, gap in found.items() if gap}
    for name, gap in broken.items():
        print(f"[fuzz] FAILED: {name} = {gap} (must be 0)")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
