import t from 'tap'
import { find, parseMetrics, sum } from '../../bench/prom-text.js'
import { sample } from '../helpers/ficus.js'

const TEXT = [
  '# HELP ficus_requests_total Requests.',
  '# TYPE ficus_requests_total counter',
  'ficus_requests_total{route="orders",backend="new",role="primary",code="200"} 3',
  'ficus_requests_total{route="orders",backend="legacy",role="primary",code="200"} 5',
  'ficus_request_duration_seconds_bucket{le="+Inf",route="orders"} 8',
  'ficus_build_info{version="1.0.0"} 1',
  'odd_label{path="a\\"b\\\\c\\nd"} 2',
  'process_cpu_seconds_total 0.25 1700000000000',
  ''
].join('\n')

t.test('parseMetrics reads every sample line with its labels, unescaped, and skips comments', async (t) => {
  const series = parseMetrics(TEXT)
  t.equal(series.length, 6)
  t.same(find(series, 'odd_label', { path: 'a"b\\c\nd' })?.value, 2, 'escaped quote, backslash and newline')
  t.equal(find(series, 'process_cpu_seconds_total')?.value, 0.25, 'a timestamp after the value is not the value')
  t.equal(find(series, 'ficus_request_duration_seconds_bucket', { route: 'orders', le: '+Inf' })?.value, 8)
  t.equal(sum(series, 'ficus_requests_total', (l) => l.route === 'orders'), 8)
})

t.test('sample() finds the series with exactly the labels given, in any order', async (t) => {
  t.equal(sample(TEXT, 'ficus_requests_total', { code: '200', role: 'primary', backend: 'new', route: 'orders' }), 3)
  t.equal(sample(TEXT, 'ficus_requests_total', { route: 'orders' }), undefined, 'a subset of the labels is not the series')
  t.equal(sample(TEXT, 'ficus_requests', { route: 'orders', backend: 'new', role: 'primary', code: '200' }), undefined, 'nor a prefix of the name')
  t.equal(sample(TEXT, 'ficus_build_info', { version: '1.0.0' }), 1)
  t.equal(sample(TEXT, 'missing_total'), undefined)
})
