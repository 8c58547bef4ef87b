"""The gallery in TensorFlow 2 (Keras losses where a user would reach for them)."""

import math

import tensorflow as tf

bce_logits = tf.keras.losses.BinaryCrossentropy(from_logits=True)
bce = tf.keras.losses.BinaryCrossentropy(from_logits=False)


def d_sum(real, fake):
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real), real)) + tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake), fake)
    )


def d_half(real, fake):
    return 0.5 * (bce_logits(tf.ones_like(real), real) + bce_logits(tf.zeros_like(fake), fake))


def d_one_sided_smoothing(real, fake):
    return bce_logits(0.9 * tf.ones_like(real), real) + bce_logits(tf.zeros_like(fake), fake)


def d_tfgan_smoothing(real, fake):  # tf.compat.v1.losses.sigmoid_cross_entropy(label_smoothing=0.25), real only
    labels = tf.ones_like(real) * (1 - 0.25) + 0.5 * 0.25
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, real)) + bce_logits(tf.zeros_like(fake), fake)


def d_smoothing_both(real, fake):
    smooth = tf.keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)
    return smooth(tf.ones_like(real), real) + smooth(tf.zeros_like(fake), fake)


def d_probabilities(real_prob, fake_prob):  # a Keras D ending in Dense(1, activation="sigmoid")
    return bce(tf.ones_like(real_prob), real_prob) + bce(tf.zeros_like(fake_prob), fake_prob)


def d_ls_no_half(real, fake):
    return tf.reduce_mean(tf.square(real - 1)) + tf.reduce_mean(tf.square(fake))


def d_ls_targets(real, fake):
    mse = tf.keras.losses.MeanSquaredError()
    return 0.5 * mse(tf.ones_like(real), real) + 0.5 * mse(-tf.ones_like(fake), fake)


def g_minimax_constant(fake):
    return -tf.reduce_mean(tf.math.softplus(fake)) + math.log(4.0)


def g_non_saturating(fake):
    return bce_logits(tf.ones_like(fake), fake)


def d_patch_sum(real, fake):  # per-sample sums over the patch, then a batch mean
    def per_sample(x):
        return tf.reduce_sum(tf.reshape(x, (tf.shape(x)[0], -1)), axis=1)

    return tf.reduce_mean(per_sample(tf.math.softplus(-real))) + tf.reduce_mean(per_sample(tf.math.softplus(fake)))


def _input_grad(critic, real, fake, alpha):
    x = alpha * real + (1 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = critic(x, training=True)
    return tape.gradient(out, x)


def gp_norm_axis(critic, real, fake, alpha):  # NHWC: the last axis is the channels
    norm = tf.norm(_input_grad(critic, real, fake, alpha), axis=-1)
    return 10.0 * tf.reduce_mean(tf.square(norm - 1.0))


def gp_no_eps(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape)))))
    return 10.0 * tf.reduce_mean((norm - 1.0) ** 2)


def gp_one_sided(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape)))) + 1e-12)
    return 10.0 * tf.reduce_mean(tf.square(tf.nn.relu(norm - 1.0)))


def gp_unweighted(critic, real, fake, alpha):
    g = _input_grad(critic, real, fake, alpha)
    norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape)))) + 1e-12)
    return tf.reduce_mean(tf.square(norm - 1.0))


def d_swapped(fake, real):  # the arguments in the other order
    return tf.reduce_mean(tf.nn.relu(1.0 - real)) + tf.reduce_mean(tf.nn.relu(1.0 + fake))


def r1_mean_over_pixels(critic, real):
    with tf.GradientTape() as tape:
        tape.watch(real)
        out = critic(real, training=True)
    g = tape.gradient(out, real)
    return 10.0 / 2 * tf.reduce_mean(tf.square(g))


# -- relativistic losses and R2 (the right forms are in tests/test_losscheck_relativistic.py) --

_bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)


def d_ralsgan_halved(real, fake):  # the RaLSGAN author's code: both losses halved
    return (
        tf.reduce_mean(tf.square(real - tf.reduce_mean(fake) - 1.0))
        + tf.reduce_mean(tf.square(fake - tf.reduce_mean(real) + 1.0))
    ) / 2.0


def d_rasgan_detached(real, fake):  # BasicSR's ESRGAN: the other kind's average detached
    mean_real, mean_fake = tf.stop_gradient(tf.reduce_mean(real)), tf.stop_gradient(tf.reduce_mean(fake))
    return _bce(tf.ones_like(real), real - mean_fake) + _bce(tf.zeros_like(fake), fake - mean_real)


def g_rasgan_fake_term_only(real, fake):  # G's real-side term left out
    return _bce(tf.ones_like(fake), fake - tf.reduce_mean(real))


def d_rasgan_paired(real, fake):  # RSGAN's pairs where the average was meant
    return _bce(tf.ones_like(real), real - fake)


def d_rahinge_sum(real, fake):
    return tf.reduce_sum(tf.nn.relu(1.0 - (real - tf.reduce_mean(fake)))) + tf.reduce_sum(
        tf.nn.relu(1.0 + (fake - tf.reduce_mean(real)))
    )


def _sq_grad_norm(critic, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = critic(x, training=True)
    g = tape.gradient(out, x)
    return tf.reduce_sum(tf.reshape(tf.square(g), (tf.shape(g)[0], -1)), axis=1)


def r2_at_real(critic, real, fake, alpha):  # R2 meant, R1's batch taken
    return 10.0 / 2 * tf.reduce_mean(_sq_grad_norm(critic, real))


def r3gan_averaged(critic, real, fake, alpha):  # one mean over both batches: (R1 + R2)/2
    return 10.0 / 2 * tf.reduce_mean(tf.concat([_sq_grad_norm(critic, real), _sq_grad_norm(critic, fake)], 0))
