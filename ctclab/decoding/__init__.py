"""Decoding: greedy and prefix beam search, the word and character n-gram LMs, error rates, tuning, CTC visuals.

The searches and the language models are re-exported here (``decoding.prefix_beam_search``,
``decoding.CharNGramLM``); error rates, tuning, pyctcdecode and the visuals are imported from
their modules.
"""

from ctclab.decoding.beam import Hypothesis, prefix_beam_search, prefix_beam_search_nbest
from ctclab.decoding.char_lm import CharNGramLM
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.lm import NGramLM

__all__ = ["CharNGramLM", "Hypothesis", "NGramLM", "greedy_decode", "prefix_beam_search", "prefix_beam_search_nbest"]
