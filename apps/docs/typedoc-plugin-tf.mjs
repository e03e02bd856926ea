// core's `tf` is TensorFlow.js's namespace, re-exported: TypeDoc gives it a page (its members
// are excluded, typedoc.config.mjs) but no text, as the export itself carries no comment. This
// says what it is and where its API is documented.
import { Comment, Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    if (context.project.packageName !== '@spikeflow/core') return;
    const tf = context.project.getChildByName('tf');
    if (!tf?.kindOf(ReflectionKind.Namespace) || tf.hasComment()) return;
    tf.comment = new Comment([
      {
        kind: 'text',
        text: "TensorFlow.js (the `@tensorflow/tfjs` union package, with every op's gradient and the chained tensor methods registered), re-exported whole: spikeflow and its plugins share this one engine. Its API is documented at ",
      },
      { kind: 'text', text: '[js.tensorflow.org](https://js.tensorflow.org/api/4.22.0/)' },
      { kind: 'text', text: '.' },
    ]);
  });
}
