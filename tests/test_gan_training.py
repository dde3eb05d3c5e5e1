"""GAN training pieces: minibatch stddev, discriminator variants, losses, EMA, data stream."""
import torch

from core import gan, toyworld
from core.progan import ProGAN


def test_minibatch_stddev_matches_manual():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=g)
    y = gan.minibatch_stddev(x, group=4)
    assert y.shape == (8, 4, 4, 4)
    assert torch.equal(y[:, :3], x)
    # groups interleave: sample i belongs to group i % (n / g)
    for j in range(2):
        members = x[j::2]
        want = members.std(0, unbiased=False).add(0).pow(2).add(1e-8).sqrt().mean()
        assert torch.allclose(y[j::2, 3], want.expand(4, 4, 4), atol=1e-6)


def test_discriminator_variants_and_losses():
    for mbstd in (True, False):
        D = gan.Discriminator((16, 16, 8), mbstd=mbstd)
        out = D(torch.randn(4, 3, 16, 16))
        assert out.shape == (4, 1)
    d_real, d_fake = torch.tensor([[10.0]]), torch.tensor([[-10.0]])
    assert gan.d_loss(d_real, d_fake) < 1e-3 and gan.g_loss(d_fake) > 9


def test_a_few_training_steps_run_and_r1_is_positive():
    torch.manual_seed(0)
    G, D = ProGAN(16, (16, 16, 8)), gan.Discriminator((16, 16, 8))
    ema = gan.EMA(G, beta=0.5)
    og = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.0, 0.99))
    od = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.0, 0.99))
    reals = toyworld.render("town", 8, seed=0, size=32)[0][:, :, ::2, ::2].contiguous()
    before = [p.clone() for p in G.parameters()]
    for _ in range(3):
        ld = gan.d_loss(D(reals), D(G(torch.randn(8, 16)).detach()))
        od.zero_grad(); ld.backward()
        r1 = gan.r1_penalty(D, reals)
        assert r1.item() > 0
        r1.backward(); od.step()
        lg = gan.g_loss(D(G(torch.randn(8, 16))))
        og.zero_grad(); lg.backward(); og.step()
        ema.update(G)
    assert all(torch.isfinite(p).all() for p in G.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    # EMA sits between the start and the trained weights
    p0, p1, pe = before[0], list(G.parameters())[0], list(ema.model.parameters())[0]
    assert not torch.equal(pe, p0) and not torch.equal(pe, p1)


def test_real_stream_is_seed_exact():
    ds = gan.RealScenes("lake", 4, 32, seed0=100, start=3)
    first = next(iter(ds))
    assert torch.equal(first, toyworld.render("lake", 4, seed=103, size=32)[0])
