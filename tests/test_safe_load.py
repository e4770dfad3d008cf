"""safe_load: torch's weights-only unpickler, quiet, for every checkpoint and tensor file the project reads."""
from __future__ import annotations

import os
import pickle
import re
import warnings

import pytest
import torch

from tests.robustness.harness import assert_clean_failure, run
from vitlens_cli.safe_load import NOT_TORCH, REFUSED, SPECIAL, UNSUPPORTED, load_tensors


def _payload(folder, protocol):
    marker = folder / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = folder / f"payload-p{protocol}.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=protocol))
    return path, marker


@pytest.mark.parametrize(("protocol", "reason"), [(2, REFUSED), (4, UNSUPPORTED.format(4)), (5, UNSUPPORTED.format(5))])
def test_a_pickle_payload_is_refused_without_a_warning(tmp_path, protocol, reason):
    path, marker = _payload(tmp_path, protocol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(pickle.UnpicklingError, match=f"^{re.escape(reason)}$"):
            load_tensors(path)
    assert not marker.exists()
    assert [str(w.message) for w in caught] == []


def test_plain_tensors_load_and_protocol_4_is_named(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "meta": {"steps": 3}}
    torch.save(state, tmp_path / "p2.pt")
    loaded = load_tensors(tmp_path / "p2.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["meta"] == {"steps": 3}
    torch.save(state, tmp_path / "p4.pt", pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(pickle.UnpicklingError, match=re.escape(UNSUPPORTED.format(4))):
            load_tensors(tmp_path / "p4.pt")
    assert [str(w.message) for w in caught] == []
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 200)))
    with pytest.raises(pickle.UnpicklingError, match=re.escape(NOT_TORCH)):
        load_tensors(tmp_path / "noise.pt")


def test_the_cli_says_one_line_for_a_payload_checkpoint(tmp_path):
    path, marker = _payload(tmp_path, 4)
    cloud = tmp_path / "c.xyz"
    cloud.write_text("".join(f"{i} {i % 7} {i % 5}\n" for i in range(64)))
    outcome = run(["embed", cloud, "--model", "tiny", "--checkpoint", path], timeout=120)
    line = assert_clean_failure(outcome, exit_code=2, names=[str(path), UNSUPPORTED.format(4)])
    assert outcome.stderr.strip() == line
    assert not marker.exists()


def test_a_fifo_checkpoint_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    with pytest.raises(pickle.UnpicklingError, match=f"^{re.escape(SPECIAL)}$"):
        load_tensors(fifo)
    cloud = tmp_path / "c.xyz"
    cloud.write_text("".join(f"{i} {i % 7} {i % 5}\n" for i in range(64)))
    outcome = run(["embed", cloud, "--model", "tiny", "--checkpoint", fifo], timeout=120)
    assert_clean_failure(outcome, exit_code=2, names=[str(fifo), "not a regular file"])
