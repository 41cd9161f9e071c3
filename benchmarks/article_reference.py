"""The article's model and training step (sections 5.1–5.6), as written, for timing against ours.

Only TF 1 API names are replaced by their TF 2 equivalents: `tf.losses.sigmoid_cross_entropy` →
`tf.compat.v1.losses.sigmoid_cross_entropy`, `tf.train.AdamOptimizer` → `tf.keras.optimizers.Adam`. It runs
eagerly, as the article's loop does. Used by `benchmarks/train_throughput.py` (the article's loop, timed
beside ours) and by `tests/test_model.py` (our pixel shuffle against the article's); nothing else imports it.
"""

import tensorflow as tf


class _IdentityBlock(tf.keras.Model):
    def __init__(self, filter, stride, data_format):
        super(_IdentityBlock, self).__init__(name='')

        self.conv2a = tf.keras.layers.Conv2D(
            filter, (3, 3), strides=stride, data_format=data_format, padding='same', use_bias=False)
        self.prelu2a = tf.keras.layers.PReLU(shared_axes=[1, 2])

        self.conv2b = tf.keras.layers.Conv2D(
            filter, (3, 3), strides=stride, data_format=data_format, padding='same', use_bias=False)

    def call(self, input_tensor):
        x = self.conv2a(input_tensor)
        x = self.prelu2a(x)
        x = self.conv2b(x)
        x = x + input_tensor
        return x


def pixelShuffler(inputs, scale=2):
    size = tf.shape(inputs)
    batch_size = size[0]
    h = size[1]
    w = size[2]
    c = inputs.get_shape().as_list()[-1]

    # Get the target channel size
    channel_target = c // (scale * scale)
    channel_factor = c // channel_target

    shape_1 = [batch_size, h, w, channel_factor // scale, channel_factor // scale]
    shape_2 = [batch_size, h * scale, w * scale, 1]

    # Reshape and transpose for periodic shuffling for each channel
    input_split = tf.split(inputs, channel_target, axis=3)
    output = tf.concat([phaseShift(x, scale, shape_1, shape_2) for x in input_split], axis=3)

    return output


def phaseShift(inputs, scale, shape_1, shape_2):
    # Tackle the condition when the batch is None
    X = tf.reshape(inputs, shape_1)
    X = tf.transpose(X, [0, 1, 3, 2, 4])

    return tf.reshape(X, shape_2)


class Generator(tf.keras.Model):
    def __init__(self, data_format='channels_last'):
        super(Generator, self).__init__(name='')
        self._input_shape = [-1, 32, 32, 3]
        self.conv1 = tf.keras.layers.Conv2D(64, kernel_size=9, strides=1, padding='SAME', data_format=data_format)
        self.prelu1 = tf.keras.layers.PReLU(shared_axes=[1, 2])
        self.res_blocks = [_IdentityBlock(64, 1, data_format) for _ in range(16)]
        self.conv2 = tf.keras.layers.Conv2D(64, kernel_size=3, strides=1, padding='SAME', data_format=data_format)
        self.upconv1 = tf.keras.layers.Conv2D(256, kernel_size=3, strides=1, padding='SAME', data_format=data_format)
        self.prelu2 = tf.keras.layers.PReLU(shared_axes=[1, 2])
        self.upconv2 = tf.keras.layers.Conv2D(256, kernel_size=3, strides=1, padding='SAME', data_format=data_format)
        self.prelu3 = tf.keras.layers.PReLU(shared_axes=[1, 2])
        self.conv4 = tf.keras.layers.Conv2D(3, kernel_size=9, strides=1, padding='SAME', data_format=data_format)

    def call(self, inputs):
        x = tf.reshape(inputs, self._input_shape)
        x = self.conv1(x)
        x = self.prelu1(x)
        x_start = x
        for i in range(len(self.res_blocks)):
            x = self.res_blocks[i](x)
        x = self.conv2(x)
        x = x + x_start
        x = self.upconv1(x)
        x = pixelShuffler(x)
        x = self.prelu2(x)
        x = self.upconv2(x)
        x = pixelShuffler(x)
        x = self.prelu3(x)
        x = self.conv4(x)
        x = tf.nn.tanh(x)
        return x


class Discriminator(tf.keras.Model):
    def __init__(self, data_format='channels_last'):
        super(Discriminator, self).__init__(name='')
        self._input_shape = [-1, 128, 128, 3]
        conv = lambda filters, stride: tf.keras.layers.Conv2D(  # noqa: E731 (the article spells out 8 calls)
            filters, kernel_size=3, strides=stride, padding='SAME', data_format=data_format)
        self.conv1, self.conv2 = conv(64, 1), conv(64, 2)
        self.conv3, self.conv4 = conv(128, 1), conv(128, 2)
        self.conv5, self.conv6 = conv(256, 1), conv(256, 2)
        self.conv7, self.conv8 = conv(512, 1), conv(512, 2)
        self.fc1 = tf.keras.layers.Dense(1024)
        self.fc2 = tf.keras.layers.Dense(1)

    def call(self, inputs):
        x = tf.reshape(inputs, self._input_shape)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6, self.conv7,
                     self.conv8):
            x = tf.nn.leaky_relu(conv(x))
        x = self.fc1(x)
        x = tf.nn.leaky_relu(x)
        x = self.fc2(x)
        return x


def vgg19(weights='imagenet'):
    vgg19 = tf.keras.applications.vgg19.VGG19(include_top=False, weights=weights, input_shape=(128, 128, 3))
    vgg19.trainable = False
    for l in vgg19.layers:
        l.trainable = False
    loss_model = tf.keras.Model(inputs=vgg19.input, outputs=vgg19.get_layer('block5_conv4').output)
    loss_model.trainable = False
    return loss_model


def create_g_loss(d_output, g_output, labels, loss_model):
    gene_ce_loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.ones_like(d_output), d_output)
    if loss_model is None:  # the article's commented-out alternative: pixel MSE
        content_loss = tf.keras.backend.mean(tf.keras.backend.square(labels - g_output))
    else:
        content_loss = tf.keras.backend.mean(tf.keras.backend.square(loss_model(labels) - loss_model(g_output)))
    g_loss = content_loss + 1e-3 * gene_ce_loss
    return g_loss


def create_d_loss(disc_real_output, disc_fake_output):
    disc_real_loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.ones_like(disc_real_output), disc_real_output)
    disc_fake_loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.zeros_like(disc_fake_output), disc_fake_output)
    disc_loss = tf.add(disc_real_loss, disc_fake_loss)
    return disc_loss


def create_optimizers():
    g_optimizer = tf.keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    d_optimizer = tf.keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    return g_optimizer, d_optimizer


def train_step(feature, label, loss_model, generator, discriminator, g_optimizer, d_optimizer):
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
        generated_images = generator(feature)

        real_output = discriminator(label)
        generated_output = discriminator(generated_images)

        g_loss = create_g_loss(generated_output, generated_images, label, loss_model)
        d_loss = create_d_loss(real_output, generated_output)

    gradients_of_generator = g_tape.gradient(g_loss, generator.variables)
    gradients_of_discriminator = d_tape.gradient(d_loss, discriminator.variables)

    g_optimizer.apply_gradients(zip(gradients_of_generator, generator.variables))
    d_optimizer.apply_gradients(zip(gradients_of_discriminator, discriminator.variables))

    return g_loss, d_loss
