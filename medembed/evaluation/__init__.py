"""Retrieval evaluation: BEIR-layout datasets, trec_eval-exact metrics, MTEB-style results and reports.

No Ray, models or LanceDB here: a job embeds and searches, then hands a run
(``run[qid][docid] = score``) to :func:`medembed.evaluation.metrics.evaluate`.
"""
