// names.go makes the Chinese names of persons and institutions. They only
// need to look plausible on a lead page; nothing matches on them.

package synth

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Common surnames, most frequent first, so that picking from the front of
// the list more often gives a realistic mix.
var surnames = []string{
	"王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高",
	"林", "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧",
	"程", "曹", "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕", "苏", "卢", "蒋", "蔡", "贾",
	"丁", "魏", "薛", "叶", "阎", "余", "潘", "杜", "戴", "夏", "钟", "汪", "田", "任", "姜",
	"范", "方", "石", "姚", "谭", "廖", "邹", "熊", "金", "陆", "郝", "孔", "白", "崔", "康",
	"毛", "邱", "秦", "江", "史", "顾", "侯", "邵", "孟", "龙", "万", "段", "雷", "钱", "汤",
}

var givenMale = []string{
	"伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞",
	"鑫", "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "阳",
	"建", "国", "志", "文", "德", "成", "海", "生", "永", "福", "兴", "荣", "忠", "喜", "贵",
}

var givenFemale = []string{
	"芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "燕", "玲", "桂", "英", "红", "梅",
	"琳", "莉", "兰", "萍", "婷", "雪", "慧", "倩", "洁", "佳", "颖", "璐", "琴", "云", "凤",
	"淑", "珍", "花", "玉", "春", "晓", "欣", "悦", "雯", "薇", "丹", "蓉", "彤", "瑶", "怡",
}

// personName draws a name; odd sequence numbers are men, as in the ID.
func personName(r *rand.Rand, male bool) string {
	var b strings.Builder
	b.Grow(9)
	// Squaring favours the common surnames at the front.
	f := r.Float64()
	b.WriteString(surnames[int(f*f*float64(len(surnames)))])
	given := givenFemale
	if male {
		given = givenMale
	}
	b.WriteString(given[r.IntN(len(given))])
	if r.IntN(4) != 0 {
		b.WriteString(given[r.IntN(len(given))])
	}
	return b.String()
}

var numerals = []string{"零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十"}

// chineseNumber writes 1..99 in Chinese numerals (一, 十二, 二十三).
func chineseNumber(n int) string {
	switch {
	case n <= 10:
		return numerals[n]
	case n < 20:
		return "十" + numerals[n-10]
	case n%10 == 0:
		return numerals[n/10] + "十"
	case n < 100:
		return numerals[n/10] + "十" + numerals[n%10]
	}
	return strconv.Itoa(n)
}

var specialHospitals = []string{"中医医院", "妇幼保健院", "中西医结合医院", "骨科医院", "康复医院", "眼科医院", "肿瘤医院"}

// hospitalName: the county's people's hospitals come first (兰州市城关区第一人民医院),
// then its specialist hospitals, then further numbered people's hospitals.
func hospitalName(c *county, i int) string {
	prefix := c.cityName + c.name
	if c.cityName == c.name {
		prefix = c.name
	}
	switch {
	case i < 2:
		return prefix + "第" + chineseNumber(i+1) + "人民医院"
	case i-2 < len(specialHospitals):
		return prefix + specialHospitals[i-2]
	}
	return prefix + "第" + chineseNumber(i-len(specialHospitals)+1) + "人民医院"
}

var streets = []string{"东关", "西关", "南关", "北关", "新华", "解放", "建设", "人民", "和平", "文化", "胜利", "中山", "滨河", "五一", "团结"}

func clinicName(c *county, i int, r *rand.Rand) string {
	if i < len(streets) && r.IntN(3) != 0 {
		return c.name + streets[i] + "街道社区卫生服务中心"
	}
	return c.name + surnames[r.IntN(30)] + "氏诊所(" + strconv.Itoa(i+1) + ")"
}

var pharmacyBrands = []string{"仁和", "众友", "德生堂", "惠仁", "同仁堂", "老百姓", "华林", "益康", "一心堂", "大参林", "百姓缘", "康美"}

func pharmacyName(c *county, i int, r *rand.Rand) string {
	return c.name + pharmacyBrands[r.IntN(len(pharmacyBrands))] + "大药房(" + strconv.Itoa(i+1) + "店)"
}
