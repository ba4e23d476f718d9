"""Scoring a fusion of events into incidents against the true incidents (synthetic city)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd


def pairwise_scores(membership: pd.DataFrame, truth_incidents: pd.DataFrame) -> dict:
    """How well a grouping matches the true one, over the events of ``membership``.

    Pairwise: of the event pairs put in one incident, the share truly together
    (precision), and of the truly-together pairs, the share put together
    (recall). Incident-level: the share of true incidents (with at least one
    member in ``membership``) whose events all landed in one fused incident
    holding nothing from another true incident (``exact``). Events listed by
    no true incident (false alarms) count as incidents of their own.
    """
    truth = truth_incidents[["incident_id", "event_ids"]].assign(
        event_id=lambda d: d["event_ids"].map(json.loads)).explode("event_id")
    true_of = dict(zip(truth["event_id"], truth["incident_id"]))
    m = membership[["event_id", "incident_id"]].drop_duplicates("event_id")
    t = m["event_id"].map(true_of)
    t = t.where(t.notna(), "alone:" + m["event_id"])
    pred, true = m["incident_id"].to_numpy(), t.to_numpy()

    def pairs(counts: pd.Series) -> int:
        c = counts.to_numpy(np.int64)
        return int((c * (c - 1) // 2).sum())

    together = pairs(pd.Series(list(zip(pred, true))).value_counts())
    pred_pairs = pairs(pd.Series(pred).value_counts())
    true_pairs = pairs(pd.Series(true).value_counts())
    real = ~pd.Series(true).str.startswith("alone:").to_numpy()
    frame = pd.DataFrame({"pred": pred, "true": true})
    per_true = frame[real].groupby("true")["pred"].nunique()
    per_pred = frame.groupby("pred")["true"].nunique()
    exact = per_true[per_true == 1].index
    whole = frame[real & frame["true"].isin(exact)].groupby("true")["pred"].first()
    exact_n = int((per_pred.reindex(whole.to_numpy()).to_numpy() == 1).sum())
    return {
        "precision": together / pred_pairs if pred_pairs else 1.0,
        "recall": together / true_pairs if true_pairs else 1.0,
        "pred_pairs": pred_pairs, "true_pairs": true_pairs,
        "incidents_fused": int(pd.Series(pred).nunique()),
        "incidents_true": int(len(per_true)),
        "exact": exact_n / len(per_true) if len(per_true) else 1.0,
    }
