"""The TensorFlow DCGAN tutorial's losses (tensorflow.org/tutorials/generative/dcgan), verbatim:
Keras' BinaryCrossentropy on logits.

    gan-backends losscheck examples/losses/dcgan_tutorial_tf.py:discriminator_loss \\
        --framework tensorflow --loss non_saturating --role d
"""

import tensorflow as tf

cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)


def discriminator_loss(real_output, fake_output):
    real_loss = cross_entropy(tf.ones_like(real_output), real_output)
    fake_loss = cross_entropy(tf.zeros_like(fake_output), fake_output)
    total_loss = real_loss + fake_loss
    return total_loss


def generator_loss(fake_output):
    return cross_entropy(tf.ones_like(fake_output), fake_output)
