"""Example answers the API documentation shows for each route (/docs, /redoc).

Plain data, abridged to one standard and one photo where a real answer has more; the tests validate every
example against its route's response schema, so an example cannot drift from what the API answers.
"""

from __future__ import annotations

GRADING_ID = "3f6c1d2e-8a4b-4c59-9e7d-0b1a2c3d4e5f"
_SHA = "df115cc143d5fe8b2380a4543ddc0998b0a50056603e20d8a8bf6191149dd6ab"

_BACKMARKET = {
    "standard": "backmarket",
    "version": "2026.11.0",
    "grade": "Good",
    "listable": True,
    "probabilities": {"Premium": 0.02, "Excellent": 0.09, "Good": 0.71, "Fair": 0.15, "Unlistable": 0.03},
    "needs_review": True,
    "review_threshold": 0.96,
    "reasons": {
        "Premium": ["2 scratches on the back, the longest 9.1 mm; Premium allows none"],
        "Excellent": [
            "2 scratches on the back, the longest 9.1 mm; Excellent allows at most 3, each up to 3.0 mm long"
        ],
    },
    "advice": [],
    "method": "exact, calibrated on 137 validation devices",
    "scale_known": True,
    "missing_views": [],
    "source": "model",
}

_PHOTO = {
    "index": 0,
    "filename": "back.jpg",
    "content_type": "image/jpeg",
    "sha256": _SHA,
    "bytes": 2_481_337,
    "width": 3024,
    "height": 4032,
    "view": "back",
    "view_source": "caller",
    "view_confidence": 1.0,
    "quality": "usable",
    "quality_confidence": 0.97,
    "usable": True,
    "message": "usable",
    "device_found": True,
    "defects": [
        {
            "type": "scratch",
            "zone": "body",
            "confidence": 0.81,
            "counted": True,
            "role": "defect",
            "box": [1210.0, 1630.5, 1388.0, 1702.0],
            "polygon": [[1210.0, 1650.0], [1215.5, 1702.0], [1388.0, 1684.0], [1383.0, 1630.5]],
            "units": "mm",
            "length": 9.1,
            "width": 0.21,
            "area": 1.9,
            "length_mm": 9.1,
            "length_rel": None,
            "contrast": None,
            "visibility": None,
        },
        {
            "type": "scratch",
            "zone": "body",
            "confidence": 0.32,
            "counted": False,
            "role": "defect",
            "box": [2010.0, 900.0, 2060.0, 960.0],
            "polygon": [[2010.0, 900.0], [2010.0, 960.0], [2060.0, 960.0], [2060.0, 900.0]],
            "units": "mm",
            "length": 2.6,
            "width": 0.12,
            "area": 0.3,
            "length_mm": 2.6,
            "length_rel": None,
            "contrast": 0.08,
            "visibility": {
                "index_at_20cm": 1.078,
                "index_at_50cm": 0.723,
                "visible_at_20cm": True,
                "visible_at_50cm": False,
                "visible_up_to_cm": 24.8,
            },
        },
    ],
    "photo_url": f"/v1/gradings/{GRADING_ID}/photos/0",
    "overlay_url": f"/v1/gradings/{GRADING_ID}/overlays/0",
}

_IMPACT = {
    "listed": True,
    "avoided_kg_co2e": 44.6,
    "ewaste_kg": 0.174,
    "if_listed_kg_co2e": 44.6,
    "if_listed_ewaste_kg": 0.174,
    "estimated": False,
    "basis": "iPhone 13",
    "new_device_kg_co2e": 64.0,
    "production_share": 0.81,
    "refurbishment_kg_co2e": 7.2,
    "method": "avoided production (ADEME 2022)",
    "method_version": "2026.12.0",
    "source": "Apple, Product Environmental Report: iPhone 13 (September 2021), 128GB: 64 kg CO2e",
    "sources": {
        "footprint": "Apple, Product Environmental Report: iPhone 13 (September 2021)",
        "mass": "Apple, iPhone 13 - Technical Specifications (2021)",
        "refurbishment": "ADEME (September 2022): refurbishing is 13% of a new device's production footprint",
    },
    "note": "Graded Good (backmarket), listable: selling it refurbished avoids 44.6 kg CO2e.",
}

GRADING = {
    "id": GRADING_ID,
    "created_at": "2026-11-20T09:14:03.512000Z",
    "tenant": "acme",
    "external_ref": "SKU-4711",
    "device_model": "iPhone 13",
    "device_kind": "phone",
    "device_kind_source": "catalogue",
    "scale": "mm",
    "needs_review": True,
    "review_reasons": ["backmarket: Good at 71%, below the review threshold 86%"],
    "grades": {"backmarket": _BACKMARKET},
    "photos": [_PHOTO],
    "model": {"name": "refurbgrade-effnet-lite0", "version": "2026.11.3", "sha256": _SHA},
    "rules_versions": {"backmarket": "2026.11.0"},
    "impact": _IMPACT,
}

# GET /v1/gradings/{id} after a reviewer overruled Back Market: the grade that stands, the model's
# original answer, the review.
GRADING_REVIEWED = {
    **GRADING,
    "grades": {"backmarket": {**_BACKMARKET, "grade": "Fair", "source": "review"}},
    "original": {"backmarket": _BACKMARKET},
    "review": {
        "status": "overruled",
        "grades": {"backmarket": "Fair"},
        "overruled": ["backmarket"],
        "reviewed_at": "2026-11-20T11:02:41.000000Z",
        "disputes": [],
    },
}

GRADING_PAGE = {
    "items": [
        {
            "id": GRADING_ID,
            "created_at": "2026-11-20T09:14:03.512000Z",
            "tenant": "acme",
            "external_ref": "SKU-4711",
            "device_model": "iPhone 13",
            "needs_review": True,
            "grades": {"backmarket": "Good", "ctia": "C", "r2": "C4"},
            "n_photos": 2,
            "url": f"/v1/gradings/{GRADING_ID}",
        }
    ],
    "total": 1,
    "limit": 20,
    "offset": 0,
}

DISPUTE = {
    "id": 42,
    "grading_id": GRADING_ID,
    "created_at": "2026-11-21T08:30:00.000000Z",
    "reason": "The mark on the back is a sticker residue, not a scratch.",
    "photos": [{"sha256": _SHA, "filename": "closeup.jpg", "content_type": "image/jpeg", "bytes": 812_004}],
    "status": "open",
    "resolution": None,
}

STANDARD = {
    "name": "ctia",
    "title": "CTIA cosmetic grade",
    "version": "2026.11.0",
    "source": "CTIA Wireless Device Grading Scales (cosmetic A-E wording)",
    "review_threshold": 0.8,
    "grades": [
        {
            "name": "A",
            "summary": "Like new; at most a few micro-scratches.",
            "listable": True,
            "limits": [
                {
                    "zones": ["screen"],
                    "types": ["scratch"],
                    "max_count": 5,
                    "max_length_mm": 3.0,
                    "max_width_mm": 0.15,
                    "max_area_mm2": None,
                    "invisible_at_cm": None,
                    "words": "on the screen: at most 5 scratches, each up to 3 mm long, 0.15 mm wide",
                },
                {
                    "zones": ["screen", "body", "frame", "camera"],
                    "types": ["crack"],
                    "max_count": 0,
                    "max_length_mm": None,
                    "max_width_mm": None,
                    "max_area_mm2": None,
                    "invisible_at_cm": None,
                    "words": "anywhere: no cracks",
                },
            ],
        },
        {"name": "E", "summary": "Broken or heavily damaged.", "listable": False, "limits": []},
    ],
}

DEVICES = {
    "catalogue_version": "2026.11.0",
    "items": [
        {
            "name": "iPhone 13 mini",
            "kind": "phone",
            "length_mm": 131.5,
            "width_mm": 64.2,
            "depth_mm": 7.65,
            "aliases": [],
        }
    ],
    "total": 1,
    "suggestions": [],
}

_MODEL_INFO = {
    "name": "refurbgrade-effnet-lite0",
    "version": "2026.11.3",
    "sha256": _SHA,
    "path": "default.onnx",
    "input_size": 384,
    "architecture": "EfficientNet-Lite0 + light decoder",
    "created": "2026-11-18T17:40:00Z",
    "metrics": {"val_qwk_backmarket": 0.54},
    "active": True,
}
MODELS = {"active": _MODEL_INFO, "available": ["default.int8.onnx", "default.onnx"]}
MODEL_INFO = _MODEL_INFO

KEY = {
    "id": "k7QpZ2",
    "role": "refurbisher",
    "tenant": "acme",
    "name": "Acme intake station 2",
    "created_at": "2026-11-20T08:00:00Z",
    "token": "rg_k7QpZ2_2yV9c1…",
}

KEY_LISTED = {
    **{k: v for k, v in KEY.items() if k != "token"},
    "token": None,
    "expires_at": None,
    "revoked_at": None,
    "status": "active",
}
KEY_REVOKED = {**KEY_LISTED, "revoked_at": "2026-11-22T10:00:00Z", "status": "revoked"}

IMPACT_SUMMARY = {
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "tenants": [
        {
            "tenant": "acme",
            "gradings": 120,
            "listed": 97,
            "not_listed": 21,
            "without_impact": 2,
            "estimated": 6,
            "avoided_kg_co2e": 4210.5,
            "ewaste_kg": 17.431,
            "method_versions": ["2026.12.0"],
        }
    ],
    "method": "docs/impact.md",
}
IMPACT_CSV = (
    "tenant,from,to,gradings,listed,not_listed,without_impact,estimated,avoided_kg_co2e,ewaste_kg,"
    "method_versions\n"
    "acme,2026-11-01T00:00:00+00:00,2026-12-01T00:00:00+00:00,120,97,21,2,6,4210.5,17.431,2026.12.0\n"
)

ERASURE = {
    "grading_id": GRADING_ID,
    "erased_at": "2027-01-15T09:30:00Z",
    "reason": "request",
    "photos": 2,
}

HEALTH_OK = {"status": "ok", "checks": {"model": "ok (2026.11.3)", "database": "ok"}}
HEALTH_STARTING = {"status": "unavailable", "checks": {"model": "not loaded", "database": "not connected"}}
