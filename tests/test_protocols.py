"""Protocol validators: clear errors that say what was expected."""
import pytest
import torch

from core.base.protocols import ProtocolError, check_generator, check_segmenter


class _Gen(torch.nn.Module):
    def __init__(self, z_dim=8, out=None):
        super().__init__()
        self.z_dim = z_dim
        self.lin = torch.nn.Linear(8, 3 * 4 * 4)
        self.out = out

    def forward(self, z):
        if self.out is not None:
            return self.out
        return torch.tanh(self.lin(z)).view(-1, 3, 4, 4)


class _Seg:
    def __init__(self, labels=("-", "a", "b"), seg=None, scores=None):
        self.labels = list(labels)
        self._seg, self._scores = seg, scores

    def segment(self, images):
        return self._seg if self._seg is not None else torch.zeros(images.shape[0], 4, 4, dtype=torch.long)

    def scores(self, images):
        return self._scores if self._scores is not None else torch.rand(images.shape[0], len(self.labels), 4, 4)


def test_generator_checks():
    check_generator(_Gen())
    with pytest.raises(ProtocolError, match="torch.nn.Module"):
        check_generator(object())
    with pytest.raises(ProtocolError, match="z_dim"):
        check_generator(_Gen(z_dim=0))
    with pytest.raises(ProtocolError, match="N x 3 x H x W"):
        check_generator(_Gen(out=torch.zeros(2, 4, 4)))


def test_segmenter_checks():
    x = torch.zeros(2, 3, 8, 8)
    check_segmenter(_Seg(), x)
    with pytest.raises(ProtocolError, match="labels"):
        check_segmenter(_Seg(labels=()))
    with pytest.raises(ProtocolError, match="integer .*dtype torch.float32"):
        check_segmenter(_Seg(seg=torch.zeros(2, 4, 4)), x)
    with pytest.raises(ProtocolError, match="N = 2"):
        check_segmenter(_Seg(seg=torch.zeros(3, 4, 4, dtype=torch.long)), x)
    with pytest.raises(ProtocolError, match="outside"):
        check_segmenter(_Seg(seg=torch.full((2, 4, 4), 7, dtype=torch.long)), x)
    with pytest.raises(ProtocolError, match="one channel per label"):
        check_segmenter(_Seg(scores=torch.rand(2, 5, 4, 4)), x)
