"""List the pre-trained models known by name (what each is, whether it is cached), or fetch some
into the cache ($ERNIE2_HOME, default ~/.cache/ernie2)."""

HELP = "list pre-trained models known by name; --download fetches them into the cache"


def add_arguments(p):
    p.add_argument("--download", nargs="+", metavar="NAME",
                   help="fetch, verify and convert these models into the cache")
    p.add_argument("--path", metavar="NAME", help="print the cached directory of NAME (no fetch)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--offline", action="store_true",
                   help="never touch the network (as ERNIE2_OFFLINE=1)")


def _row(info, home):
    from ernie2 import hub

    cached = hub.cached_path(info.name, home)
    return {"name": info.name, "language": info.language, "layers": info.layers,
            "hidden": info.hidden, "heads": info.heads, "vocab_size": info.vocab_size,
            "summary": info.summary, "aliases": list(info.aliases), "note": info.note,
            "cached": str(cached) if cached else None,
            "cached_from": hub.describe_cached(info.name, home) if cached else None,
            "sources": [s.describe() for s in info.sources]}


def run(args):
    import json

    from ernie2 import hub
    from ernie2.model.checkpoint import convert

    home = hub.cache_home()
    if args.path:
        path = hub.cached_path(args.path, home)
        if path is None:
            raise FileNotFoundError(f"{args.path} is not in the cache {home} "
                                    f"(fetch it with: ernie2 models --download {args.path})")
        print(path)
        return 0
    if args.download:
        for name in args.download:
            path = hub.resolve(name, convert=convert, offline=True if args.offline else None)
            print(f"{name}: {path}")
        return 0
    rows = [_row(info, home) for info in hub.iter_models()]
    if args.json:
        print(json.dumps({"cache": str(home), "models": rows}, indent=2, ensure_ascii=False))
        return 0
    header = ("NAME", "LANG", "LAYERS", "HIDDEN", "HEADS", "VOCAB", "CACHED", "WHAT")
    table = [header] + [(r["name"], r["language"], str(r["layers"]), str(r["hidden"]),
                         str(r["heads"]), str(r["vocab_size"]), "yes" if r["cached"] else "no",
                         r["summary"] + (f" (also: {', '.join(r['aliases'])})"
                                         if r["aliases"] else ""))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    print(f"\ncache: {home}  (load by name: ErnieModel.from_pretrained(\"ernie-1.0\"); "
          "fetch now: ernie2 models --download NAME)")
    return 0
