"""Command line of the edge runtime (LiteRT only; never imports TensorFlow).

    python -m edge gallery build --model hacnn_int8.tflite --images crops/ --out gallery
    python -m edge query  --model hacnn_int8.tflite --gallery gallery --image person.jpg --top_k 5
    python -m edge stream --model hacnn_int8.tflite --gallery gallery --watch incoming/ --threshold 1.0
    python -m edge search --gallery gallery --attributes "female & backpack" --top_k 20 --json

argparse rather than absl: the edge install is LiteRT + numpy + Pillow only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _model_args(p, required=True):
    p.add_argument("--model", required=required, help="exported .tflite file")
    p.add_argument("--metadata", default=None, help="sidecar JSON (default: beside the model)")
    p.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: LiteRT's)")
    p.add_argument("--delegate", default="xnnpack",
                   help="xnnpack (default), none, or the path of a delegate library")


def _load_model(args):
    from edge.runtime import EdgeModel

    return EdgeModel(args.model, metadata_path=args.metadata, num_threads=args.threads, delegate=args.delegate)


def _fmt_attrs(attrs: dict | None, limit: int = 6) -> str:
    if not attrs:
        return ""
    on = sorted(((v, k) for k, v in attrs.items() if v >= 0.5), reverse=True)[:limit]
    return " [" + ", ".join(f"{k} {v:.2f}" for v, k in on) + "]" if on else " []"


def cmd_gallery_build(args) -> int:
    from edge.gallery import build_gallery

    model = _load_model(args)
    gallery, skipped = build_gallery(model, args.images)
    for p, why in skipped:
        print(f"skipped {p}: {why}", file=sys.stderr)
    if not len(gallery):
        print(f"error: no usable person crops under {args.images}", file=sys.stderr)
        return 2
    npz, js = gallery.save(args.out)
    print(f"gallery: {len(gallery)} images of {len(set(gallery.identities))} identities "
          f"({len(skipped)} skipped) -> {npz}, {js}")
    return 0


def cmd_query(args) -> int:
    from edge import preprocess
    from edge.gallery import Gallery
    from edge.stream import match_threshold

    model = _load_model(args)
    gallery = Gallery.load(args.gallery)
    gallery.check_model(model.metadata, f"gallery {args.gallery}")
    if os.path.isdir(args.image):
        paths = preprocess.list_images(args.image)
        if not paths:
            print(f"error: no images in {args.image}", file=sys.stderr)
            return 2
    else:
        paths = [args.image]
    out, kept, skipped = model.predict_paths(paths, on_error="skip" if len(paths) > 1 else "raise")
    for p, why in skipped:
        print(f"skipped {p}: {why}", file=sys.stderr)
    results = []
    names = model.attribute_names
    try:
        threshold = match_threshold(args.threshold, model.metadata)
    except ValueError as e:
        threshold = None
        print(f"note: no same-person decision: {e}", file=sys.stderr)
    for i, p in enumerate(kept):
        matches = gallery.search(out["embedding"][i], top_k=args.top_k)
        if threshold is not None:
            for m in matches:
                m.same_person = bool(m.distance <= threshold)
        attrs = ({n: float(v) for n, v in zip(names, out["attributes"][i])} if names else None)
        results.append({"image": p, "matches": [m.__dict__ for m in matches], "attributes": attrs})
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{r['image']}{_fmt_attrs(r['attributes'])}")
            for rank, m in enumerate(r["matches"], 1):
                same = {True: " same person", False: ""}.get(m.get("same_person"), "")
                print(f"  {rank}. {m['identity']:<16} distance {m['distance']:.4f}{same}  ({m['path']})")
    return 0 if results else 2


def cmd_search(args) -> int:
    """Gallery images ranked by an attribute query (docs/retrieval.md); with --image, nearest
    neighbours of the image whose attribute score is >= --min_score."""
    from edge.gallery import Gallery
    from keras_hpnet.retrieval.index import GalleryIndex

    if args.image and not args.model:
        print("error: --image needs --model", file=sys.stderr)
        return 2
    model = _load_model(args) if args.image else None
    md = model.metadata if model else None
    if GalleryIndex.is_index_file(args.gallery):
        index = GalleryIndex.load(args.gallery, dim=md and md.embedding_size, model_name=md and md.model_name)
    else:
        gallery = Gallery.load(args.gallery)
        if md:
            gallery.check_model(md, f"gallery {args.gallery}")
        index = gallery.to_index()
    cameras = args.camera or None
    if args.image:
        out, _, _ = model.predict_paths([args.image])
        hits = index.search(out["embedding"][0], args.top_k, cameras=cameras, attributes=args.attributes,
                            min_score=args.min_score)[0]
    else:
        hits = index.search_attributes(args.attributes, args.top_k, cameras=cameras, min_score=args.min_score)
    results = [{"identity": h.identity, "path": h.path, "score": h.score, "camera": h.camera,
                **({"distance": h.distance} if args.image else {})} for h in hits]
    if args.picture:
        _search_picture(index, args.attributes, hits, args.picture)
    if args.json:
        print(json.dumps({"query": args.attributes, "image": args.image, "results": results}, indent=1))
    else:
        for rank, r in enumerate(results, 1):
            dist = f"  distance {r['distance']:.4f}" if args.image else ""
            print(f"{rank:3d}. {r['identity']:<16} score {r['score']:.4f}{dist}  ({r['path']})")
    return 0


def _search_picture(index, text, hits, out):
    """The hits' crops with their attribute probabilities (unreadable crops drawn grey)."""
    import numpy as np

    from edge import preprocess
    from keras_hpnet.retrieval.picture import attribute_search_picture
    from keras_hpnet.retrieval.query import parse_query
    from keras_hpnet.viz import save_png

    crops = []
    for h in hits:
        try:
            crops.append(preprocess.load_image(h.path))
        except (preprocess.ImageError, OSError, ValueError):
            crops.append(np.full((128, 64, 3), 200, np.uint8))
    probs = index.attributes[[h.slot for h in hits]] if hits else np.zeros((0, len(index.attribute_names)))
    save_png(attribute_search_picture(parse_query(text, index.attribute_names), crops, np.nan_to_num(probs),
                                      [h.score for h in hits]), out)
    print(f"picture: {out}", file=sys.stderr)


def cmd_stream(args) -> int:
    from edge import stream
    from edge.gallery import Gallery

    model = _load_model(args)
    if args.gallery:
        gallery = Gallery.load(args.gallery)
        gallery.check_model(model.metadata, f"gallery {args.gallery}")
    else:
        gallery = Gallery(embeddings=[], identities=[], attribute_names=model.attribute_names,
                          model_name=model.metadata.model_name, input_size=list(model.input_size))
    assigner = stream.IdentityAssigner(gallery, args.threshold, metadata=model.metadata)
    skipped: list = []
    if args.video:
        items = stream.video_frames(args.video, every=args.every, max_frames=args.max_items)
    elif args.watch:
        items = stream.watch_folder(args.watch, poll_seconds=args.poll, idle_timeout=args.idle_timeout,
                                    skipped=skipped)
    else:
        print("error: give --watch FOLDER or --video FILE", file=sys.stderr)
        return 2
    n = new = 0
    try:
        if args.tracklets:  # runs of crops of one track id, matched by their pooled embedding
            groups = stream.group_tracklets(items, max_len=args.max_tracklet_len)
            assignments = stream.process_tracklets(model, assigner, groups)
        else:
            assignments = stream.process_images(model, assigner, items)
        for a in assignments:
            n += 1
            new += a.is_new
            tag = "NEW " if a.is_new else ""
            print(f"{a.source}: {tag}{a.identity} (distance {a.distance:.4f}){_fmt_attrs(a.attributes)}", flush=True)
            while skipped:
                p, why = skipped.pop(0)
                print(f"skipped {p}: {why}", file=sys.stderr)
            if args.max_items and n >= args.max_items:
                break
    except KeyboardInterrupt:
        pass
    print(f"{n} {'tracklets' if args.tracklets else 'crops'}, {new} new identities, gallery now {len(set(gallery.identities))} identities")
    if args.save:
        gallery.save(args.save)
        print(f"gallery saved to {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge", description="keras-hpnet edge runtime (LiteRT)")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("gallery", help="gallery commands")
    gsub = g.add_subparsers(dest="gallery_command", required=True)
    b = gsub.add_parser("build", help="embed a folder of person crops into a gallery")
    _model_args(b)
    b.add_argument("--images", required=True,
                   help="folder of crops: one sub-folder per person, or Market-1501 file names")
    b.add_argument("--out", required=True, help="gallery path (writes OUT.npz and OUT.json)")
    b.set_defaults(func=cmd_gallery_build)

    q = sub.add_parser("query", help="top-k identities for one image or a folder of images")
    _model_args(q)
    q.add_argument("--gallery", required=True, help="gallery path (as given to gallery build --out)")
    q.add_argument("--image", required=True, help="an image file or a folder of them")
    q.add_argument("--top_k", type=int, default=5)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--threshold", type=float, default=None,
                   help="mark matches within this distance as the same person (default: the model's calibrated one)")
    q.set_defaults(func=cmd_query)

    a = sub.add_parser("search", help="rank a gallery by an attribute query (optionally near an image)")
    a.add_argument("--gallery", required=True, help="an edge gallery (gallery build --out) or a gallery index file")
    a.add_argument("--attributes", required=True, help='attribute query, e.g. "female & backpack & !hat"')
    a.add_argument("--top_k", type=int, default=20)
    a.add_argument("--min_score", type=float, default=0.0, help="drop results scoring below this")
    a.add_argument("--camera", type=int, action="append", help="only this camera (repeatable)")
    a.add_argument("--image", default=None, help="also look like this image (needs --model)")
    _model_args(a, required=False)
    a.add_argument("--json", action="store_true", help="print one JSON object with a results list")
    a.add_argument("--picture", default=None, help="also draw the results' crops with their attributes (PNG)")
    a.set_defaults(func=cmd_search)

    s = sub.add_parser("stream", help="assign identities to a stream of crops, registering new people")
    _model_args(s)
    s.add_argument("--gallery", default=None, help="start from this gallery (default: empty)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--watch", help="folder where crops appear")
    src.add_argument("--video", help="video file (frames are crops; needs OpenCV)")
    s.add_argument("--threshold", type=float, default=None,
                   help="a crop farther than this from every gallery entry is a new identity "
                        "(default: the model's calibrated match_threshold, docs/retrieval.md)")
    s.add_argument("--poll", type=float, default=0.5, help="seconds between folder scans")
    s.add_argument("--idle_timeout", type=float, default=None, help="stop after this many seconds without new crops")
    s.add_argument("--every", type=int, default=1, help="video: take every N-th frame")
    s.add_argument("--max_items", type=int, default=None, help="stop after this many crops")
    s.add_argument("--tracklets", action="store_true",
                   help="group consecutive crops of one track (file name without its frame number, "
                        "cam1_track7_0003.jpg -> cam1_track7) and match each tracklet's pooled embedding")
    s.add_argument("--max_tracklet_len", type=int, default=None, help="--tracklets: cut tracklets after N crops")
    s.add_argument("--save", default=None, help="save the grown gallery here at the end")
    s.set_defaults(func=cmd_stream)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:  # ModelError, ImageError, gallery errors
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
